package hack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGotestNamesFailures: hack/gotest.sh ends its output with every failed test (a parallel subtest too)
// followed by that test's own log lines, then the counts, and exits non-zero; a passing run exits 0.
func TestGotestNamesFailures(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module gt\n\ngo 1.22\n",
		"a_test.go": `package gt

import "testing"

func TestA(t *testing.T) {
	t.Run("sub", func(t *testing.T) { t.Parallel(); t.Log("sub says hello"); t.Fatal("sub breaks") })
	t.Run("ok", func(t *testing.T) { t.Parallel(); t.Log("ok is fine") })
}

func TestB(t *testing.T) { t.Log("b one"); t.Error("b breaks") }

func TestC(t *testing.T) { t.Log("c passes") }
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("gotest.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script, "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTEST_LOG="+filepath.Join(dir, "log"), "GOFLAGS=-count=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("gotest.sh exited 0 on failing tests:\n%s", out)
	}
	_, tail, ok := strings.Cut(string(out), "failed tests, each with its last 12 log lines:\n")
	if !ok {
		t.Fatalf("no failed-tests section:\n%s", out)
	}
	want := []string{"--- FAIL: TestA ", "--- FAIL: TestA/sub ", "sub says hello", "sub breaks", "--- FAIL: TestB ", "b one", "b breaks", "2 passed, 3 failed"}
	rest := tail
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("failed-tests section lacks %q after the previous lines:\n%s", w, tail)
		}
		rest = rest[i+len(w):]
	}
	for _, not := range []string{"ok is fine", "c passes"} {
		if strings.Contains(tail, not) {
			t.Errorf("failed-tests section holds a passing test's line %q:\n%s", not, tail)
		}
	}
}
