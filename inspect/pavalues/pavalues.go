// Package pavalues turns the values of prometheus-adapter's Helm chart (prometheus-community's
// charts/prometheus-adapter) into values of promql-adapter's chart: the rules (rules.default as
// rules of our own that serve the same metric names, rules.custom, rules.external and rules.resource
// in prometheus-adapter's format, which the adapter reads unchanged), the Prometheus URL, and every
// deployment setting the chart has a value for. A key the chart has no value for is named in a
// warning; a key prometheus-adapter's chart does not have is an error. It does no I/O.
package pavalues

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// Options tune Convert.
type Options struct {
	// KnownFlag reports whether promql-adapter has a flag of that name (without dashes); extraArguments
	// naming another flag are left out with a warning. Nil keeps every argument.
	KnownFlag func(name string) bool
}

// Result is the converted values file and what the user must know about it.
type Result struct {
	// Values is a values file of promql-adapter's chart, YAML.
	Values []byte
	// Warnings name each key that was not carried over, or not as it was, and why.
	Warnings []string
}

// header opens every converted file.
const header = "# promql-adapter chart values, converted from prometheus-adapter chart values by\n" +
	"# `promql-adapter convert --helm-values`. Keys left out take the promql-adapter chart's defaults.\n"

// chartFlags are the flags promql-adapter's chart sets itself; an extra argument repeating one is left out.
var chartFlags = []string{"config", "config-format", "apis", "prometheus-url", "prometheus-timeout",
	"prometheus-client-config", "prometheus-header", "series-relist-interval", "series-max-age",
	"metrics-relist-interval", "metrics-max-age", "secure-port", "tls-cert-file", "tls-private-key-file", "cert-dir", "v"}

// flagValues are the chart's values for flags an extra argument may set instead.
var flagValues = map[string]string{"v": "logLevel", "metrics-relist-interval": "seriesRelistInterval",
	"series-relist-interval": "seriesRelistInterval", "metrics-max-age": "seriesMaxAge", "series-max-age": "seriesMaxAge"}

// converter holds one conversion's state.
type converter struct {
	user     map[string]any // the file as given
	eff      map[string]any // the PA chart's defaults with the file over them
	out      map[string]any
	handled  map[string]bool // dotted keys of the file that were translated (or reported)
	warnings []string
	opts     Options
}

// Convert translates a prometheus-adapter chart values file (YAML) into promql-adapter chart values.
// Keys the file leaves out take prometheus-adapter's defaults where they decide what is served
// (rules.default, the Prometheus URL, which APIs are registered) and promql-adapter's elsewhere;
// a key set to prometheus-adapter's default is likewise left to promql-adapter's default.
func Convert(data []byte, opts Options) (*Result, error) {
	var user map[string]any
	if err := yaml.Unmarshal(data, &user); err != nil {
		return nil, fmt.Errorf("prometheus-adapter values: %w", err)
	}
	if user == nil {
		user = map[string]any{}
	}
	var unknown []string
	findUnknown(paKeys, user, "", &unknown)
	if len(unknown) > 0 {
		return nil, fmt.Errorf("prometheus-adapter values: not keys of prometheus-adapter's chart: %s", strings.Join(unknown, ", "))
	}
	c := &converter{user: user, eff: merge(normalize(paKeys).(map[string]any), user), out: map[string]any{},
		handled: map[string]bool{}, opts: opts}
	if err := c.rules(); err != nil {
		return nil, err
	}
	if err := c.prometheus(); err != nil {
		return nil, err
	}
	c.deployment()
	c.tls()
	c.leftovers()

	body, err := yaml.Marshal(c.out)
	if err != nil {
		return nil, err
	}
	return &Result{Values: append([]byte(header), body...), Warnings: c.warnings}, nil
}

// findUnknown lists the dotted keys of v that spec does not have.
func findUnknown(spec section, v map[string]any, prefix string, out *[]string) {
	keys := sortedKeys(v)
	for _, k := range keys {
		s, ok := spec[k]
		if !ok {
			*out = append(*out, prefix+k)
			continue
		}
		if sub, isSection := s.(section); isSection {
			if m, isMap := v[k].(map[string]any); isMap {
				findUnknown(sub, m, prefix+k+".", out)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// normalize turns Go literals into what JSON decoding gives (sections into maps, ints into float64).
func normalize(v any) any {
	switch x := v.(type) {
	case section:
		return normalize(map[string]any(x))
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = normalize(e)
		}
		return l
	case int:
		return float64(x)
	}
	return v
}

// merge lays over on base, recursing into maps of both (Helm's rule for values).
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// lookup reads a dotted key of m.
func lookup(m map[string]any, key string) (any, bool) {
	parts := strings.Split(key, ".")
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// set writes a dotted key of the output.
func (c *converter) set(key string, v any) {
	parts := strings.Split(key, ".")
	m := c.out
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

func (c *converter) warn(format string, a ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, a...))
}

// given returns the file's value of a dotted key and marks it handled; ok is false when the file
// does not set it, or sets it to the PA chart's default.
func (c *converter) given(key string) (any, bool) {
	v, ok := lookup(c.user, key)
	if !ok {
		return nil, false
	}
	c.handled[key] = true
	def, _ := lookup(normalize(paKeys).(map[string]any), key)
	if reflect.DeepEqual(v, def) {
		c.handled[key] = false // reported among the keys at their defaults
		return nil, false
	}
	return v, true
}

// effective is the value of a dotted key as prometheus-adapter's chart sees it; it marks the key handled.
func (c *converter) effective(key string) any {
	if _, ok := lookup(c.user, key); ok {
		c.handled[key] = true
	}
	v, _ := lookup(c.eff, key)
	return v
}

// empty reports whether a value renders as nothing in a Helm template (`if` is false).
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// rules turns rules.* into the rule file (prometheus-adapter format) and the APIs to register,
// as prometheus-adapter's chart registers them: custom with rules.default or rules.custom,
// external with rules.external, metrics.k8s.io with rules.resource.
func (c *converter) rules() error {
	def := !empty(c.effective("rules.default"))
	custom, external, res := c.effective("rules.custom"), c.effective("rules.external"), c.effective("rules.resource")
	existing := c.effective("rules.existing")
	c.set("apis.custom", def || !empty(custom))
	c.set("apis.external", !empty(external))
	c.set("apis.resource", !empty(res))
	c.set("rules.format", "prometheus-adapter")
	if !def && empty(custom) && empty(external) && empty(res) {
		return errors.New("prometheus-adapter values: no rules: rules.default is false and rules.custom, rules.external and rules.resource are empty (prometheus-adapter's chart would register no API)")
	}
	if !empty(existing) {
		name, ok := existing.(string)
		if !ok {
			return fmt.Errorf("prometheus-adapter values: rules.existing: want a ConfigMap name, got %v", existing)
		}
		c.set("rules.existingConfigMap", name)
		c.set("rules.key", "config.yaml")
		c.warn("rules.existing: the ConfigMap %q (key config.yaml) is the rule file, as in prometheus-adapter's chart: it must be in the release's namespace; rules.default, custom, external and resource only decide which APIs are registered", name)
		return nil
	}
	cfg := map[string]any{}
	var rules []any
	if def {
		rules = append(rules, defaultRules()...)
	}
	if !empty(custom) {
		l, ok := custom.([]any)
		if !ok {
			return errors.New("prometheus-adapter values: rules.custom: want a list of rules")
		}
		rules = append(rules, l...)
	}
	if len(rules) > 0 {
		cfg[pacompat.SectionRules] = rules
	}
	if !empty(external) {
		if _, ok := external.([]any); !ok {
			return errors.New("prometheus-adapter values: rules.external: want a list of rules")
		}
		cfg[pacompat.SectionExternalRules] = external
	}
	if !empty(res) {
		if _, ok := res.(map[string]any); !ok {
			return errors.New("prometheus-adapter values: rules.resource: want an object (cpu, memory, window)")
		}
		cfg[pacompat.SectionResourceRules] = res
	}
	// The rule file must be one the adapter reads: prometheus-adapter's own strict decoding, each bad rule named.
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if _, err := pacompat.Parse(data); err != nil {
		return fmt.Errorf("prometheus-adapter values: rules: %w", err)
	}
	c.set("rules.config", cfg)
	return nil
}

// prometheus builds the URL as prometheus-adapter's chart does: prometheus.url, then ":" and
// prometheus.port when the port is set, then prometheus.path. A port written in prometheus.url
// gives way to prometheus.port (the PA chart would render both, an invalid URL). It also points the
// chart's NetworkPolicy egress at the namespace and port of an in-cluster Service URL.
func (c *converter) prometheus() error {
	raw := fmt.Sprint(c.effective("prometheus.url"))
	port := c.effective("prometheus.port")
	path := c.effective("prometheus.path")
	if strings.Contains(raw, "{{") {
		return fmt.Errorf("prometheus-adapter values: prometheus.url: %q is a Helm template; promql-adapter's chart does not template it: give the URL itself", raw)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("prometheus-adapter values: prometheus.url: %q is not an http(s) URL", raw)
	}
	if !empty(port) {
		p := strings.TrimSpace(fmt.Sprint(port))
		if f, ok := port.(float64); ok {
			p = strconv.FormatFloat(f, 'f', -1, 64)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("prometheus-adapter values: prometheus.port: %v is not a port", port)
		}
		if u.Port() != "" && u.Port() != p {
			c.warn("prometheus.url names port %s and prometheus.port is %s: prometheus.port wins", u.Port(), p)
		}
		u.Host = net.JoinHostPort(u.Hostname(), p)
	}
	if !empty(path) {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(fmt.Sprint(path), "/")
	}
	c.set("prometheus.url", u.String())

	// In-cluster Service names: <svc>.<namespace>[.svc[.<domain>]].
	host := u.Hostname()
	labels := strings.Split(host, ".")
	if net.ParseIP(host) == nil && len(labels) >= 2 && (len(labels) == 2 || labels[2] == "svc") {
		c.set("prometheus.networkPolicy.namespaceSelector", map[string]any{"kubernetes.io/metadata.name": labels[1]})
	} else {
		c.warn("prometheus.url: %s is not a Service name <name>.<namespace>.svc: set prometheus.networkPolicy (namespaceSelector, podSelector, port) so the chart's NetworkPolicy lets the adapter reach it, or networkPolicy.enabled: false", host)
	}
	p := u.Port()
	if p == "" {
		p = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	n, _ := strconv.Atoi(p)
	c.set("prometheus.networkPolicy.port", n)
	return nil
}

// copyAs carries a key over under our name when the file sets it to something else than PA's default.
func (c *converter) copyAs(from, to string) {
	if v, ok := c.given(from); ok {
		c.set(to, v)
	}
}

// deployment carries over the Deployment's settings.
func (c *converter) deployment() {
	for _, k := range []string{"image.repository", "image.tag", "image.pullPolicy"} {
		if v, ok := lookup(c.user, k); ok {
			c.handled[k] = true
			c.warn("%s (%v) ignored: promql-adapter's chart runs promql-adapter's image (image.repository, image.tag, image.digest of its chart)", k, v)
		}
	}
	if v, ok := c.given("image.pullSecrets"); ok {
		var secrets []any
		for _, s := range v.([]any) {
			switch x := s.(type) {
			case string:
				secrets = append(secrets, map[string]any{"name": x})
			case map[string]any:
				secrets = append(secrets, x)
			}
		}
		c.set("imagePullSecrets", secrets)
	}
	for _, k := range []string{"nameOverride", "fullnameOverride", "replicas", "logLevel", "nodeSelector", "tolerations",
		"affinity", "priorityClassName", "podLabels", "podAnnotations", "env", "extraVolumes", "extraVolumeMounts",
		"resources", "podSecurityContext", "securityContext", "rbac.create", "serviceAccount.create",
		"serviceAccount.name", "serviceAccount.annotations"} {
		c.copyAs(k, k)
	}
	if a, ok := c.out["affinity"].(map[string]any); ok && a["podAntiAffinity"] != nil {
		c.set("podAntiAffinity", "none") // the user's own anti-affinity replaces the chart's
	}
	c.copyAs("customLabels", "commonLabels")
	c.copyAs("customAnnotations", "commonAnnotations")
	c.copyAs("metricsRelistInterval", "seriesRelistInterval")
	c.copyAs("strategy", "updateStrategy")
	c.copyAs("service.port", "service.port")
	if v, ok := c.given("service.type"); ok && v != "ClusterIP" {
		c.warn("service.type %v not carried over: the APIServices reach the adapter through a ClusterIP Service", v)
	}
	if v, ok := c.given("listenPort"); ok {
		if f, isNum := v.(float64); isNum && f >= 1024 && f <= 65535 {
			c.set("securePort", v)
		} else {
			c.warn("listenPort %v not carried over: the adapter runs without privileges and listens on a port of 1024 or above (securePort)", v)
		}
	}
	if v, ok := c.given("hostNetwork.enabled"); ok {
		c.set("hostNetwork", v)
	}
	if v, ok := c.given("topologySpreadConstraints"); ok {
		var out []any
		dropped := false
		for _, e := range v.([]any) {
			m, isMap := e.(map[string]any)
			if !isMap {
				continue
			}
			cp := map[string]any{}
			for k, x := range m {
				if k == "labelSelector" {
					dropped = true
					continue
				}
				cp[k] = x
			}
			out = append(out, cp)
		}
		if dropped {
			c.warn("topologySpreadConstraints: labelSelector left out: promql-adapter's chart selects its own pods in each constraint")
		}
		c.set("topologySpreadConstraints", out)
	}
	if v, ok := c.given("podDisruptionBudget.enabled"); ok {
		c.set("podDisruptionBudget.enabled", v)
	}
	if v, ok := c.given("podDisruptionBudget.minAvailable"); ok {
		c.set("podDisruptionBudget.minAvailable", v)
	}
	for pa, ours := range map[string]string{"livenessProbe": "liveness", "readinessProbe": "readiness", "startupProbe": "startup"} {
		v, ok := c.given(pa)
		if !ok {
			continue
		}
		m, _ := v.(map[string]any)
		timing := map[string]any{}
		var other []string
		for _, k := range sortedKeys(m) {
			switch k {
			case "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold":
				timing[k] = m[k]
			default:
				other = append(other, k)
			}
		}
		if len(timing) > 0 {
			c.set("probes."+ours, timing)
		}
		if len(other) > 0 {
			c.warn("%s: only the timings are carried over (probes.%s); %s left out: the chart probes /readyz and /livez on its HTTPS port", pa, ours, strings.Join(other, ", "))
		}
	}
	if v, ok := c.given("extraArguments"); ok {
		var args []any
		for _, a := range v.([]any) {
			s := fmt.Sprint(a)
			name := strings.TrimLeft(strings.SplitN(s, "=", 2)[0], "-")
			value := ""
			if i := strings.Index(s, "="); i >= 0 {
				value = s[i+1:]
			}
			switch {
			case flagValues[name] != "" && value != "":
				key := flagValues[name]
				if _, set := c.out[key]; set {
					c.warn("extraArguments: %s left out: %s is set already", s, key)
					break
				}
				var v any = value
				if n, err := strconv.Atoi(value); err == nil && key == "logLevel" {
					v = n
				}
				c.set(key, v)
				c.warn("extraArguments: %s carried over as %s: %v", s, key, v)
			case slices.Contains(chartFlags, name):
				c.warn("extraArguments: %s left out: promql-adapter's chart sets --%s from its values", s, name)
			case c.opts.KnownFlag != nil && !c.opts.KnownFlag(name):
				c.warn("extraArguments: %s left out: promql-adapter has no flag --%s (see promql-adapter --help)", s, name)
			default:
				args = append(args, s)
			}
		}
		if len(args) > 0 {
			c.set("extraArgs", args)
		}
	}
}

// tls maps the serving certificate: tls.enable (PEM in the values) → tls.mode secret, the CA as
// caBundle and a Secret the user creates from the certificate and key; certManager.enabled →
// tls.mode certManager. Neither: the chart's default (it makes a CA and the APIServices trust it,
// where prometheus-adapter's chart set insecureSkipTLSVerify).
func (c *converter) tls() {
	cm := !empty(c.effective("certManager.enabled"))
	if cm {
		c.set("tls.mode", "certManager")
		c.copyAs("certManager.certDuration", "tls.certManager.duration")
	}
	enable := !empty(c.effective("tls.enable"))
	for _, k := range []string{"tls.ca", "tls.key", "tls.certificate"} {
		if v, ok := lookup(c.user, k); ok && (enable || commentOnly(fmt.Sprint(v))) {
			c.handled[k] = true
		}
	}
	if !enable {
		return
	}
	if cm {
		c.warn("tls.enable and certManager.enabled are both set: cert-manager makes the certificate (tls.mode: certManager); tls.ca, tls.key and tls.certificate are not used")
		return
	}
	ca := fmt.Sprint(c.effective("tls.ca"))
	c.set("tls.mode", "secret")
	c.set("tls.caBundle", base64.StdEncoding.EncodeToString([]byte(strings.TrimSpace(ca)+"\n")))
	msg := "tls.enable: the chart reads the serving certificate from a kubernetes.io/tls Secret: before installing, create it from tls.certificate and tls.key, " +
		"e.g. kubectl -n NAMESPACE create secret tls RELEASE-tls --cert=tls.crt --key=tls.key (RELEASE-tls is the chart's default tls.secretName; the key is not written to the values)"
	if names := certNames(fmt.Sprint(c.effective("tls.certificate"))); len(names) > 0 {
		msg += fmt.Sprintf("; the certificate names %s: kube-apiserver checks it against the chart's Service <fullname>.NAMESPACE.svc, so set fullnameOverride to the Service name it names or issue a new certificate", strings.Join(names, ", "))
	}
	c.warn("%s", msg)
}

// commentOnly reports whether s holds nothing but "#" lines, as the PA chart's placeholders do.
func commentOnly(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// certNames are the DNS names of a PEM certificate (none if it does not parse).
func certNames(p string) []string {
	block, _ := pem.Decode(bytes.TrimSpace([]byte(p)))
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return cert.DNSNames
}

// leftovers reports every key of the file not translated: at PA's default (one line), or not
// carried over with the reason.
func (c *converter) leftovers() {
	defaults := normalize(paKeys).(map[string]any)
	var atDefault []string
	var walk func(spec section, v map[string]any, prefix string)
	walk = func(spec section, v map[string]any, prefix string) {
		for _, k := range sortedKeys(v) {
			key := prefix + k
			if sub, ok := spec[k].(section); ok {
				if m, isMap := v[k].(map[string]any); isMap {
					walk(sub, m, key+".")
					continue
				}
			}
			if c.handled[key] {
				continue
			}
			if def, _ := lookup(defaults, key); reflect.DeepEqual(v[k], def) || (def == nil && empty(v[k])) {
				atDefault = append(atDefault, key)
				continue
			}
			why := unmapped[key]
			if why == "" {
				why = "promql-adapter's chart has no such value"
			}
			val, _ := json.Marshal(v[k])
			if strings.HasPrefix(key, "tls.") {
				val = []byte("PEM") // never a key's text in a message
			}
			if len(val) > 60 {
				val = append(val[:57], "..."...)
			}
			c.warn("%s (%s) not carried over: %s", key, val, why)
		}
	}
	walk(paKeys, c.user, "")
	if len(atDefault) > 0 {
		c.warn("at prometheus-adapter's defaults, so promql-adapter's defaults apply: %s", strings.Join(atDefault, ", "))
	}
}
