package inspect

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/promql-adapter/promql-adapter/version"
)

// TestCheckJSONReportsTheVersion: check --json says which adapter build judged the rules.
func TestCheckJSONReportsTheVersion(t *testing.T) {
	defer func(v, c string) { version.Version, version.Commit = v, c }(version.Version, version.Commit)
	version.Version, version.Commit = "v1.2.3", "cafe"
	var buf bytes.Buffer
	if err := (&Report{}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Adapter version.Info `json:"adapter"`
		Rules   []RuleReport `json:"rules"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Adapter != version.Get() || got.Adapter.Version != "v1.2.3" || got.Adapter.Commit != "cafe" || got.Rules == nil {
		t.Errorf("check --json: %s", buf.String())
	}
}
