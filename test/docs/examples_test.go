package docs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/server"
)

// The marks a page puts on the line right above a fenced yaml block (see docs/rules.md, "How the examples are
// checked"): the block is a rule file, chart values whose rules.config is one, or deliberately not checked.
const (
	markRules   = "<!-- check -->"
	markValues  = "<!-- check rules.config -->"
	markNoCheck = "<!-- no-check:"
)

// yamlBlock is one fenced yaml block of a page and the mark above it ("" when none).
type yamlBlock struct {
	page string
	line int // of the opening fence
	mark string
	text string
}

func (b yamlBlock) String() string {
	return fmt.Sprintf("%s:%d", strings.TrimPrefix(b.page, root+"/"), b.line)
}

// yamlBlocks lists the fenced yaml blocks of a page, at any indentation.
func yamlBlocks(t *testing.T, page string) []yamlBlock {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out    []yamlBlock
		cur    *yamlBlock
		indent string
		prev   string // the last non-blank line outside a fence
		n      int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
			if strings.TrimPrefix(trimmed, "```") == "yaml" {
				cur = &yamlBlock{page: page, line: n, mark: markOf(prev)}
			} else {
				cur = &yamlBlock{page: page, line: -1} // another language: skipped
			}
		case cur != nil && trimmed == "```":
			if cur.line > 0 {
				out = append(out, *cur)
			}
			cur, prev = nil, trimmed // a mark is on the line right above its block
		case cur != nil:
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		case trimmed != "":
			prev = trimmed
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func markOf(line string) string {
	for _, m := range []string{markRules, markValues} {
		if line == m {
			return m
		}
	}
	if strings.HasPrefix(line, markNoCheck) {
		return markNoCheck
	}
	return ""
}

// looksLikeRules says whether a yaml block has the top-level keys of a rule file, or chart values holding one.
func looksLikeRules(text string) bool {
	var top map[string]any
	if err := yaml.Unmarshal([]byte(text), &top); err != nil {
		return false
	}
	for _, k := range []string{"metrics", "externalRules", "resourceRules"} {
		if _, ok := top[k]; ok {
			return true
		}
	}
	if r, ok := top["resources"].(map[string]any); ok && (r["cpu"] != nil || r["memory"] != nil) {
		return true
	}
	switch r := top["rules"].(type) {
	case []any: // prometheus-adapter's rules (not RBAC's or Prometheus's)
		if len(r) == 0 {
			return false
		}
		first, _ := r[0].(map[string]any)
		return first["seriesQuery"] != nil || first["metricsQuery"] != nil
	case map[string]any: // chart values
		return r["config"] != nil
	}
	return false
}

// ruleFile is the rule file a marked block holds.
func ruleFile(b yamlBlock) ([]byte, error) {
	if b.mark != markValues {
		return []byte(b.text), nil
	}
	var v struct {
		Rules struct {
			Config any `json:"config"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(b.text), &v); err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	if v.Rules.Config == nil {
		return nil, fmt.Errorf("chart values without rules.config")
	}
	return yaml.Marshal(v.Rules.Config)
}

// checkRules loads a rule file with the server's loader and runs check's code over it against stubProm; it
// returns why the file does not load or which rules check reports broken.
func checkRules(t *testing.T, data []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rules, _, err := server.LoadRules(path, naming.BuiltinResources())
	if err != nil {
		return fmt.Errorf("does not load: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	report, err := inspect.Check(ctx, rules, stubProm{}, inspect.CheckOptions{Backends: stubBackends{}})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if report.Broken() {
		var b strings.Builder
		_ = report.WriteTable(&b)
		return fmt.Errorf("check reports a broken rule:\n%s", b.String())
	}
	return nil
}

// TestExampleRulesPassCheck: every yaml block marked as a rule file (or chart values holding one) on a page
// loads and passes check, and every block that looks like a rule file carries a mark.
func TestExampleRulesPassCheck(t *testing.T) {
	checked := 0
	for _, p := range pages(t) {
		for _, b := range yamlBlocks(t, p) {
			switch b.mark {
			case markNoCheck:
			case "":
				if looksLikeRules(b.text) {
					t.Errorf("%s: a rule file without %q, %q or %q above it", b, markRules, markValues, markNoCheck+" why -->")
				}
			default:
				data, err := ruleFile(b)
				if err == nil {
					err = checkRules(t, data)
				}
				if err != nil {
					t.Errorf("%s: example rules: %v", b, err)
				}
				checked++
			}
		}
	}
	if checked < 5 {
		t.Errorf("only %d example rule blocks checked", checked)
	}
	t.Logf("%d example rule blocks pass check", checked)
}

// TestBrokenExampleIsFound: the check above fails on a rule that does not load, on one check reports broken, and
// on a rule file with no mark.
func TestBrokenExampleIsFound(t *testing.T) {
	page := filepath.Join(t.TempDir(), "a.md")
	doc := strings.Join([]string{
		markRules, "```yaml", "metrics:", "- name: ok", "  resource: pods", "  query: sum by (namespace, pod) (rate(x[1m]))", "```",
		markRules, "```yaml", "metrics:", "- name: drops_pod", "  resource: pods", "  query: sum by (namespace) (rate(x[1m]))", "```",
		markValues, "```yaml", "rules:", "  config:", "    metrics:", "    - resource: pods",
		"      discover: {series: '{__name__=~\"a_.+\"}', matches: 'b_(.+)', as: '$1'}", "      query: sum by (namespace, pod) (__series__)", "```",
		"", "```yaml", "metrics: []", "```",
		"```yaml", "kind: ClusterRole", "rules:", "- apiGroups: [\"\"]", "```",
	}, "\n")
	if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(t, page)
	if len(blocks) != 5 {
		t.Fatalf("found %d yaml blocks, want 5", len(blocks))
	}
	for i, want := range []string{"", "does not load", "check reports a broken rule"} {
		data, err := ruleFile(blocks[i])
		if err == nil {
			err = checkRules(t, data)
		}
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("block %d: err %v, want %q", i, err, want)
		}
	}
	if blocks[3].mark != "" || !looksLikeRules(blocks[3].text) {
		t.Errorf("an unmarked rule file is not found: %+v", blocks[3])
	}
	if looksLikeRules(blocks[4].text) {
		t.Errorf("a ClusterRole is taken for a rule file")
	}
}

// stubBackends answers every declared backend of an example with stubProm.
type stubBackends struct{}

// Querier implements adapter.Backends.
func (stubBackends) Querier(string) (adapter.Querier, bool) { return stubProm{}, true }

// stubProm stands in for a Prometheus that holds one series for every selector: a query answers one sample
// carrying the labels its outermost aggregation keeps (all conventional object labels when it keeps them all),
// and a series selector lists one name that its name matcher accepts.
type stubProm struct{}

// objectLabels are the labels a sample keeps when the query does not aggregate them away.
var objectLabels = []string{"namespace", "pod", "container", "service", "node", "instance", "deployment", "queue", "job"}

func (stubProm) Query(_ context.Context, query string) (model.Vector, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		return nil, err
	}
	m := model.Metric{}
	for _, l := range kept(expr) {
		m[model.LabelName(l)] = model.LabelValue("example-" + l)
	}
	return model.Vector{{Metric: m, Value: 1, Timestamp: model.Now()}}, nil
}

func (stubProm) SeriesNames(_ context.Context, selector string, _ time.Time) ([]string, error) {
	name, _, err := series(selector)
	if err != nil {
		return nil, err
	}
	return []string{name}, nil
}

func (stubProm) Series(_ context.Context, selector string, _ time.Time) ([]naming.SeriesLabels, error) {
	name, names, err := series(selector)
	if err != nil {
		return nil, err
	}
	return []naming.SeriesLabels{{Query: selector, Name: name, Labels: names}}, nil
}

// kept is the label names the result of expr keeps.
func kept(expr parser.Expr) []string {
	switch e := expr.(type) {
	case *parser.ParenExpr:
		return kept(e.Expr)
	case *parser.StepInvariantExpr:
		return kept(e.Expr)
	case *parser.AggregateExpr:
		if e.Without {
			return slices.DeleteFunc(slices.Clone(objectLabels), func(l string) bool { return slices.Contains(e.Grouping, l) })
		}
		return e.Grouping
	case *parser.BinaryExpr:
		if _, ok := e.LHS.(*parser.NumberLiteral); ok {
			return kept(e.RHS)
		}
		return kept(e.LHS)
	}
	return objectLabels
}

// series parses a series selector into a metric name it accepts and the label names of such a series.
func series(selector string) (string, []string, error) {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(selector)
	if err != nil {
		return "", nil, err
	}
	name := "example_metric"
	names := slices.Clone(objectLabels)
	for _, m := range ms {
		switch {
		case m.Name == labels.MetricName && m.Type == labels.MatchEqual:
			name = m.Value
		case m.Name == labels.MetricName && m.Type == labels.MatchRegexp:
			if name, err = matching(m.Value); err != nil {
				return "", nil, err
			}
		case !slices.Contains(names, m.Name):
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return name, names, nil
}

// matching is a short string a regular expression matches (in full, as Prometheus anchors it).
func matching(expr string) (string, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", err
	}
	var gen func(re *syntax.Regexp) string
	gen = func(re *syntax.Regexp) string {
		switch re.Op {
		case syntax.OpLiteral:
			return string(re.Rune)
		case syntax.OpCharClass:
			return string(re.Rune[0])
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			return "x"
		case syntax.OpCapture, syntax.OpPlus:
			return gen(re.Sub[0])
		case syntax.OpRepeat:
			return strings.Repeat(gen(re.Sub[0]), re.Min)
		case syntax.OpConcat:
			var b strings.Builder
			for _, s := range re.Sub {
				b.WriteString(gen(s))
			}
			return b.String()
		case syntax.OpAlternate:
			return gen(re.Sub[0])
		}
		return "" // empty match, anchors, star, quest
	}
	return gen(re.Simplify()), nil
}
