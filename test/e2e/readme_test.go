//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/hack/release/release"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/registry"
)

// quickstart is the README's five-minute start: the files its yaml blocks name on their first line
// ("# my-rules.yaml") and the commands of the shell block under "<!-- quickstart -->", continuation lines joined
// and comments left out.
type quickstart struct {
	files    map[string]string
	commands []string
}

var fileLineRE = regexp.MustCompile(`^# ([A-Za-z0-9._-]+\.ya?ml)$`)

// readQuickstart parses the quickstart out of a Markdown file.
func readQuickstart(t *testing.T, path string) quickstart {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := quickstart{files: map[string]string{}}
	var (
		lang, prev, file, cont string
		inFence, isQuick       bool
		body                   strings.Builder
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !inFence && strings.HasPrefix(line, "```"):
			inFence, lang, isQuick, file = true, strings.TrimPrefix(line, "```"), prev == "<!-- quickstart -->", ""
			body.Reset()
		case inFence && line == "```":
			inFence = false
			if file != "" {
				q.files[file] = body.String()
			}
			prev = line
		case inFence && lang == "yaml":
			if m := fileLineRE.FindStringSubmatch(line); body.Len() == 0 && file == "" && m != nil {
				file = m[1]
				continue
			}
			body.WriteString(line + "\n")
		case inFence && lang == "sh" && isQuick:
			trimmed := strings.TrimSpace(line)
			if cont == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
				continue
			}
			if strings.HasSuffix(trimmed, `\`) {
				cont += strings.TrimSuffix(trimmed, `\`)
				continue
			}
			q.commands = append(q.commands, cont+trimmed)
			cont = ""
		case !inFence && strings.TrimSpace(line) != "":
			prev = strings.TrimSpace(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(q.commands) == 0 || !strings.HasPrefix(q.commands[0], "helm install ") {
		t.Fatalf("%s: no quickstart block starting with helm install: %q", path, q.commands)
	}
	return q
}

// TestE2EReadmeQuickstart runs the README's five-minute start, read from README.md so that the two cannot drift,
// on a local control plane of its own: its rule and HPA files, its `helm install` of the chart from a registry
// (this checkout's `make release` pushed to Debian's docker-registry on 127.0.0.1, which serves plain HTTP; only
// the local cluster's Prometheus URL, certificates and ExternalName Service added), and every kubectl
// command, with kubectl, helm and jq found on PATH as a user's shell would. The pods kwok runs have no
// processes, so the adapter runs as the process the chart's Deployment describes, once helm install returned.
// Every command must succeed; the metric list must name the rule's metric, the values command must print a
// value for the app's pod, and the README's HPA must scale the app on it.
func TestE2EReadmeQuickstart(t *testing.T) {
	ctx := context.Background()
	q := readQuickstart(t, filepath.Join(root, "README.md"))
	for _, f := range []string{"my-rules.yaml", "hpa.yaml"} {
		if q.files[f] == "" {
			t.Fatalf("README.md has no yaml block starting with %q (files: %v)", "# "+f, q.files)
		}
	}
	const shop = "shop"
	app := loadsim.Target{Namespace: shop, Deployment: "web", Service: "web", Capacity: 100, MatchLabels: map[string]string{"app": "web"}}
	st2 := chartStack(ctx, t, app)
	// The user's app: a Deployment whose pods export http_requests_total, 30 requests/s in all.
	if err := st2.CreateWorkload(ctx, app, 1); err != nil {
		t.Fatal(err)
	}
	if err := st2.Sim.SetLoad(shop, "web", 30); err != nil {
		t.Fatal(err)
	}

	// A release of this checkout in a registry on 127.0.0.1, made as docs/release.md says: the README installs
	// the chart from REGISTRY at VERSION.
	regPath := registry.Start(t) + "/promql-adapter-readme"
	registry.MakeRelease(ctx, t, root, helmBin(t), regPath, filepath.Join(t.TempDir(), "release"))
	v, err := release.GitVersion(ctx, root)
	if err != nil {
		t.Fatal(err)
	}

	// The user's shell: a directory with the README's files, kubectl, helm and jq on PATH, KUBECONFIG set.
	work, bin := t.TempDir(), t.TempDir()
	for name, data := range q.files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(bin, "kubectl"): filepath.Join(binDir, "kubectl"),
		filepath.Join(bin, "helm"):    helmBin(t),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatalf("the README's commands need jq: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	local := valuesFile(t, chartLocalValues(st2, port))
	const chartRef = "oci://REGISTRY/charts/promql-adapter --version VERSION"
	home := t.TempDir()
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+st2.Cluster.AdminKubeconfig(),
		"HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")

	// What some commands must print, checked (and the command run again, as a user would) until it does.
	expect := map[string]string{
		"kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2 |": "http_requests_per_second",
		"/pods/*/http_requests_per_second":                        `"pod":"web-`,
	}
	for _, c := range q.commands {
		run := c
		if strings.HasPrefix(c, "helm install ") || strings.HasPrefix(c, "helm upgrade ") {
			if !strings.Contains(c, chartRef) {
				t.Fatalf("README command %q does not install %s", c, chartRef)
			}
			// The local registry serves plain HTTP.
			run = strings.Replace(run, chartRef, "oci://"+regPath+"/charts/promql-adapter --version "+v.SemVer+" --plain-http", 1)
			run += " -f " + local + " --set prometheus.url=" + st2.Prom.URL()
		}
		want := ""
		for k, v := range expect {
			if strings.Contains(c, k) {
				want = v
			}
		}
		// helm runs once; a kubectl command is run again, a second apart, until it succeeds and prints what
		// it must (the first values need two scrapes), at most for 90 s.
		start, tries := time.Now(), 0
		var out, why string
		for {
			cmdCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			cmd := exec.CommandContext(cmdCtx, "bash", "-o", "pipefail", "-c", run)
			cmd.Dir, cmd.Env = work, env
			b, err := cmd.CombinedOutput()
			cancel()
			out, tries = string(b), tries+1
			switch {
			case err != nil:
				why = err.Error()
			case !strings.Contains(out, want):
				why = "its output lacks " + want
			default:
				why = ""
			}
			if why == "" || strings.HasPrefix(c, "helm ") || time.Since(start) > 90*time.Second {
				break
			}
			time.Sleep(time.Second)
		}
		if why != "" {
			t.Fatalf("README command %q (%d tries): %s\n%s", c, tries, why, out)
		}
		ran := ""
		if run != c {
			ran = "\n  run as: " + run
		}
		t.Logf("$ %s  (%d tries, %s)%s\n%s", c, tries, time.Since(start).Round(100*time.Millisecond), ran, out)
		if strings.HasPrefix(c, "helm install ") {
			runChartAdapter(ctx, t, st2)
		}
	}

	// The README's HPA reads the metric and scales the app: 30 requests/s against 10 a pod is 3 pods.
	eventually(t, 150*time.Second, "the README's HPA scales web to 3", func() (bool, string) {
		h, err := st2.Kube.AutoscalingV2().HorizontalPodAutoscalers(shop).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		d, err := st2.Kube.AppsV1().Deployments(shop).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		active := condition(h, autoscalingv2.ScalingActive)
		ok := active != nil && active.Status == corev1.ConditionTrue && ptr.Deref(d.Spec.Replicas, 0) == 3
		return ok, fmt.Sprintf("replicas %d, metrics %+v, conditions %+v", ptr.Deref(d.Spec.Replicas, 0), h.Status.CurrentMetrics, h.Status.Conditions)
	})
}
