package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/backends"
	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/inspect/pavalues"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
	"github.com/promql-adapter/promql-adapter/server"
)

// Exit codes of the subcommands.
const (
	ExitOK     = 0 // every rule serves
	ExitBroken = 1 // check: some rule is broken; explain: the path names nothing served
	ExitUsage  = 2 // bad flags, unreadable rule file, Prometheus unreachable
)

// cliFlags are the flags check and explain share.
type cliFlags struct {
	rules, promURL, clientConfig string
	kubeconfig                   string // explain hpa only
	timeout, lookback            time.Duration
	json                         bool
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *cliFlags) {
	fs := newFlagSet(name, stderr)
	f := &cliFlags{}
	fs.StringVar(&f.rules, "config", "", "rule file, native or prometheus-adapter format (required)")
	fs.StringVar(&f.promURL, "prometheus-url", "http://127.0.0.1:9090", "Prometheus HTTP API base URL")
	fs.StringVar(&f.clientConfig, "prometheus-client-config", "", "file holding a Prometheus http_config block (TLS, auth, headers)")
	fs.DurationVar(&f.timeout, "prometheus-timeout", 5*time.Second, "bound on each query")
	fs.DurationVar(&f.lookback, "series-max-age", 10*time.Minute, "how far back discovery lists series")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	return fs, f
}

// open loads the rule file the way the server does (built-in resources only), connects to
// Prometheus, and builds the backends the file declares over that default client, with the flags'
// timeout for those that set none.
func (f *cliFlags) open() (*naming.Rules, *adapter.PromClient, *backends.Set, error) {
	if f.rules == "" {
		return nil, nil, nil, fmt.Errorf("--config is required")
	}
	rules, _, err := server.LoadRules(f.rules, naming.BuiltinResources())
	if err != nil {
		return nil, nil, nil, err
	}
	httpCfg := config.DefaultHTTPClientConfig
	if f.clientConfig != "" {
		if httpCfg, err = adapter.LoadHTTPClientConfig(f.clientConfig); err != nil {
			return nil, nil, nil, err
		}
	}
	q, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: f.promURL, HTTP: httpCfg, Timeout: f.timeout}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	set := backends.New(q, backends.Options{Dir: filepath.Dir(f.rules), Defaults: backends.Defaults{Timeout: f.timeout}})
	if err := set.Update(rules.Backends); err != nil {
		return nil, nil, nil, err
	}
	return rules, q, set, nil
}

// usages are the subcommands' help texts: how each is called and what it prints.
var usages = map[string]string{
	"check": `usage: promql-adapter check --config FILE [--prometheus-url URL] [--json]

Runs every rule of FILE against Prometheus and prints, per rule, the metrics it serves, the objects
found and a sample value each, or why it yields nothing. Exit code 0: every rule serves; 1: some rule is
broken; 2: bad flags, unreadable rule file or Prometheus unreachable.`,
	"explain": `usage: promql-adapter explain --config FILE [--prometheus-url URL] [--json] PATH
       promql-adapter explain hpa NAMESPACE/NAME --config FILE [--kubeconfig FILE] [--prometheus-url URL] [--json]

PATH: prints the PromQL the adapter runs for one API path (offline, no cluster needed), e.g.
  /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/*/METRIC?labelSelector=app%3Dweb
  /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC
hpa: why this replica count. For each metric of a live HPA: the rule that serves it, the PromQL one
request runs for the HPA's pods or object, the values Prometheus returns, the replicas it asks for as
the HPA controller computes them (target, tolerance); then the largest, the min/max bounds, the
behavior, and the HPA's status and conditions.
Exit code 0: explained; 1: the path names nothing served, or no such HPA (the namespace's HPAs are
listed); 2: bad flags or rule file, or the cluster unreachable.`,
	"convert": `usage: promql-adapter convert --config FILE
       promql-adapter convert --helm-values FILE [-o OUT]

--config: prints a prometheus-adapter config (rules, externalRules, resourceRules) in the native rule
format. Rules that cannot be expressed simply stay as comments that say why.
--helm-values: turns a values file of prometheus-adapter's Helm chart into values of promql-adapter's
chart (rules.default becomes rules that serve the same metric names); every key not carried over as it
was is named on stderr. Exit code 0: converted; 2: bad flags, an unreadable file, or a key that is not
one of prometheus-adapter's chart.`,
}

// newFlagSet is a subcommand's flag set; its usage is the command's help text and flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n", usages[name])
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; -h or --help prints the command's help on stdout. It returns the exit code
// when the command must stop.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return ExitOK, false
		}
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage, false
	}
	return 0, true
}

// RunCheck is `promql-adapter check`: for every rule, the metrics it serves, the objects found and
// a sample value each, or why it yields nothing. It exits ExitBroken when a rule is broken.
func RunCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newFlags("check", stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	rules, q, set, err := f.open()
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return ExitUsage
	}
	for _, w := range rules.Warnings {
		fmt.Fprintln(stderr, "check: warning:", w)
	}
	report, err := Check(ctx, rules, q, CheckOptions{Lookback: f.lookback, Timeout: f.timeout, Backends: set})
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return ExitUsage
	}
	if f.json {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return ExitUsage
	}
	if report.Broken() {
		return ExitBroken
	}
	return ExitOK
}

// RunExplain is `promql-adapter explain PATH`, the PromQL the adapter would run for one API path,
// or `promql-adapter explain hpa NAMESPACE/NAME`, why a live HPA has its replica count.
func RunExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newFlags("explain", stderr)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "explain hpa: kubeconfig of the cluster; $KUBECONFIG, ~/.kube/config or in-cluster config if empty")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	pos, err := positional(fs)
	if err != nil {
		return ExitUsage
	}
	if len(pos) > 0 && pos[0] == "hpa" {
		if len(pos) != 2 {
			fmt.Fprintln(stderr, "explain hpa: give one HPA as NAMESPACE/NAME; usage:")
			fs.Usage()
			return ExitUsage
		}
		return runExplainHPA(ctx, f, pos[1], stdout, stderr)
	}
	if len(pos) != 1 {
		fs.Usage()
		return ExitUsage
	}
	rules, q, set, err := f.open()
	if err != nil {
		fmt.Fprintln(stderr, "explain:", err)
		return ExitUsage
	}
	// A coalescing cache, so that a rule's freshness shapes the query as the server's does.
	p := adapter.NewProvider(adapter.Options{Querier: q, Backends: set, Coalesce: coalesce.New[[]adapter.Sample](1, naming.MaxFreshness)}, rules)
	if p.HasDiscovery() {
		if err := p.Discover(ctx, f.lookback, f.lookback); err != nil {
			fmt.Fprintln(stderr, "explain: discovery:", err)
		}
	}
	x, err := Explain(ctx, rules, pos[0], p)
	if err != nil {
		fmt.Fprintln(stderr, "explain:", err)
		return ExitBroken
	}
	if x.Backend == naming.DefaultBackend {
		x.BackendURL = f.promURL
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(x)
	} else {
		_, err = fmt.Fprint(stdout, x.String())
	}
	if err != nil {
		fmt.Fprintln(stderr, "explain:", err)
		return ExitUsage
	}
	return ExitOK
}

// positional returns the arguments that are not flags, parsing the flags that follow them
// (explain hpa NS/NAME --config FILE).
func positional(fs *flag.FlagSet) ([]string, error) {
	var pos []string
	for fs.NArg() > 0 {
		pos = append(pos, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

// runExplainHPA is `explain hpa NAMESPACE/NAME`.
func runExplainHPA(ctx context.Context, f *cliFlags, target string, stdout, stderr io.Writer) int {
	namespace, name, ok := strings.Cut(target, "/")
	if !ok || namespace == "" || name == "" || strings.Contains(name, "/") {
		fmt.Fprintf(stderr, "explain hpa: %q: want NAMESPACE/NAME\n", target)
		return ExitUsage
	}
	rules, q, set, err := f.open()
	if err != nil {
		fmt.Fprintln(stderr, "explain hpa:", err)
		return ExitUsage
	}
	kube, err := kubeClient(f.kubeconfig, f.timeout)
	if err != nil {
		fmt.Fprintln(stderr, "explain hpa:", err)
		return ExitUsage
	}
	x, err := ExplainHPA(ctx, HPASource{Kube: kube, Rules: rules, Querier: q, Backends: set, Timeout: f.timeout, Lookback: f.lookback}, namespace, name)
	if err != nil {
		fmt.Fprintln(stderr, "explain hpa:", err)
		if errors.Is(err, ErrNoHPA) {
			return ExitBroken
		}
		return ExitUsage
	}
	x.RuleFile = f.rules
	if f.json {
		err = x.WriteJSON(stdout)
	} else {
		err = x.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "explain hpa:", err)
		return ExitUsage
	}
	return ExitOK
}

// kubeClient connects to the cluster of kubeconfig ($KUBECONFIG, ~/.kube/config or in-cluster when empty).
func kubeClient(kubeconfig string, timeout time.Duration) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.Timeout = timeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}

// RunConvert is `promql-adapter convert`: a prometheus-adapter config in the native format, or a
// prometheus-adapter chart values file as promql-adapter chart values, on stdout or -o.
// Rules that cannot be expressed simply stay as comments that say why.
func RunConvert(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runConvert(ctx, args, stdout, stderr, nil)
}

// ConvertWithFlags is RunConvert that keeps, of a values file's extraArguments, only the flags
// knownFlag (a flag name without dashes) accepts: the server's command line.
func ConvertWithFlags(knownFlag func(string) bool) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return runConvert(ctx, args, stdout, stderr, knownFlag)
	}
}

func runConvert(_ context.Context, args []string, stdout, stderr io.Writer, knownFlag func(string) bool) int {
	fs := newFlagSet("convert", stderr)
	path := fs.String("config", "", "prometheus-adapter config file")
	values := fs.String("helm-values", "", "prometheus-adapter Helm chart values file")
	outPath := fs.String("o", "", "with --helm-values: write the values to this file instead of stdout")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if (*path == "") == (*values == "") {
		fmt.Fprintln(stderr, "convert: give exactly one of --config and --helm-values")
		return ExitUsage
	}
	if *values != "" {
		return convertValues(*values, *outPath, knownFlag, stdout, stderr)
	}
	if *outPath != "" {
		fmt.Fprintln(stderr, "convert: -o goes with --helm-values")
		return ExitUsage
	}
	data, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintln(stderr, "convert:", err)
		return ExitUsage
	}
	cfg, err := pacompat.Parse(data)
	if err != nil {
		fmt.Fprintln(stderr, "convert:", err)
		return ExitUsage
	}
	out, err := pacompat.Convert(cfg, naming.BuiltinResources())
	if err != nil {
		fmt.Fprintln(stderr, "convert:", err)
		return ExitUsage
	}
	if _, err := stdout.Write(out); err != nil {
		return ExitUsage
	}
	return ExitOK
}

// convertValues is convert --helm-values: the values on stdout (or outPath), each warning on stderr.
func convertValues(path, outPath string, knownFlag func(string) bool, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "convert:", err)
		return ExitUsage
	}
	res, err := pavalues.Convert(data, pavalues.Options{KnownFlag: knownFlag})
	if err != nil {
		fmt.Fprintf(stderr, "convert: %s: %v\n", path, err)
		return ExitUsage
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "convert: warning:", w)
	}
	if outPath != "" {
		err = os.WriteFile(outPath, res.Values, 0o644)
	} else {
		_, err = stdout.Write(res.Values)
	}
	if err != nil {
		fmt.Fprintln(stderr, "convert:", err)
		return ExitUsage
	}
	return ExitOK
}
