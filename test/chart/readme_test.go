package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// readmeRow is a row of the chart README's values table: | `key` | type | `default` | description |.
var readmeRow = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|[^|]*\\|([^|]*)\\|")

// valueLeaves lists the key paths of values a user sets one by one, with their defaults: a map is walked into
// when the schema describes its keys (properties); a list, a scalar, an empty map or a free-form map (labels,
// resources' requests) is one value.
func valueLeaves(values map[string]any, schema map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v any, s map[string]any)
	walk = func(prefix string, v any, s map[string]any) {
		m, isMap := v.(map[string]any)
		props, _ := s["properties"].(map[string]any)
		if !isMap || len(m) == 0 || props == nil {
			out[prefix] = v
			return
		}
		for k, sub := range m {
			ss, _ := props[k].(map[string]any)
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, sub, ss)
		}
	}
	walk("", values, schema)
	return out
}

// schemaAt is the schema of a dotted key path ("" when the schema does not describe it).
func schemaAt(schema map[string]any, path string) map[string]any {
	cur := schema
	for _, k := range strings.Split(path, ".") {
		props, _ := cur["properties"].(map[string]any)
		next, ok := props[k].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

// readmeMismatches compares the README's values table with values.yaml and the schema: every value of
// values.yaml has a row, every row names a value (KEY[].FIELD rows name a field of the items of list KEY, as
// the schema describes them), and a scalar's Default column is its value in values.yaml.
func readmeMismatches(valuesYAML, schemaJSON, readme []byte) ([]string, error) {
	var values, schema map[string]any
	if err := yaml.Unmarshal(valuesYAML, &values); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if err := json.Unmarshal(schemaJSON, &schema); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	leaves := valueLeaves(values, schema)
	rows := map[string]string{}
	var problems []string
	for _, m := range readmeRow.FindAllStringSubmatch(string(readme), -1) {
		key, def := m[1], strings.TrimSpace(m[2])
		if key == "Key" {
			continue
		}
		if _, dup := rows[key]; dup {
			problems = append(problems, fmt.Sprintf("README documents %s twice", key))
		}
		rows[key] = def
		if list, field, ok := strings.Cut(key, "[]."); ok {
			items, _ := schemaAt(schema, list)["items"].(map[string]any)
			if _, isList := leaves[list].([]any); !isList || schemaAt(items, field) == nil {
				problems = append(problems, fmt.Sprintf("README documents %s, but %s is not a list of values.yaml whose items have %s", key, list, field))
			}
			continue
		}
		v, ok := leaves[key]
		if !ok {
			problems = append(problems, fmt.Sprintf("README documents %s, which is not a value of values.yaml", key))
			continue
		}
		switch v.(type) {
		case string, float64, bool:
			want, _ := json.Marshal(v)
			if def != "`"+string(want)+"`" {
				problems = append(problems, fmt.Sprintf("README gives %s the default %s; values.yaml has `%s`", key, def, want))
			}
		}
	}
	for k := range leaves {
		if _, ok := rows[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s of values.yaml is not documented in the README's values table", k))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

func readChartFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadmeDocumentsEveryValue: charts/promql-adapter/README.md's values table and values.yaml hold the same
// keys, and the defaults the table gives are values.yaml's.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	problems, err := readmeMismatches(readChartFile(t, "values.yaml"), readChartFile(t, "values.schema.json"), readChartFile(t, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if n := len(readmeRow.FindAllString(string(readChartFile(t, "README.md")), -1)); n < 100 {
		t.Errorf("the README's values table has %d rows: the test reads the wrong table", n)
	}
}

// TestReadmeCheckFindsDrift: a value added to values.yaml without a row, a row without a value, a stale
// default and a row for a field list items do not have are each reported.
func TestReadmeCheckFindsDrift(t *testing.T) {
	values := append(readChartFile(t, "values.yaml"), []byte("\nundocumentedValue: 1\n")...)
	readme := strings.Replace(string(readChartFile(t, "README.md")), "| `replicas` |", "| `replica` |", 1)
	readme = strings.Replace(readme, "| `securePort` | int | `6443` |", "| `securePort` | int | `443` |", 1)
	readme += "\n| `forward.external[].port` | int | | no such field |\n"
	problems, err := readmeMismatches(values, readChartFile(t, "values.schema.json"), []byte(readme))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README documents forward.external[].port, but forward.external is not a list of values.yaml whose items have port",
		"README documents replica, which is not a value of values.yaml",
		"README gives securePort the default `443`; values.yaml has `6443`",
		"replicas of values.yaml is not documented in the README's values table",
		"undocumentedValue of values.yaml is not documented in the README's values table",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}
