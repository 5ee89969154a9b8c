package hack

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// makeN is `make -n target` in the repository: the commands the target would run, run by none.
func makeN(t *testing.T, target string) string {
	t.Helper()
	cmd := exec.Command("make", "-n", target)
	cmd.Dir = ".."
	// An outer make's flags (make unit runs this test) must not reach the inner one.
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MAKEFLAGS=") && !strings.HasPrefix(e, "MFLAGS=") && !strings.HasPrefix(e, "MAKELEVEL=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n %s: %v\n%s", target, err, out)
	}
	return string(out)
}

// testLines are the lines of a make -n output that run tests: hack/gotest.sh, hack/fuzz.sh or go test itself.
func testLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "hack/gotest.sh") || strings.Contains(l, "hack/fuzz.sh") || strings.Contains(l, "go test") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestTiers: make test is the light tier (no KEDA, the image for this machine's platform only, no fuzzing past the seeds) and make test-peers
// the heavy one; every test command of both goes through a script that fails when it ran no test, and
// make test-peers' e2e -run picks exactly the e2e tests of the files with the build tag peers.
func TestTiers(t *testing.T) {
	light, heavy := makeN(t, "test"), makeN(t, "test-peers")
	for _, tc := range []struct {
		tier, out string
		want      []string // substrings of make -n's output
		not       []string
	}{
		{"test", light,
			[]string{"go vet -tags e2e,peers,install ./...", "hack/gotest.sh -race", "PROMQL_ADAPTER_CLUSTER_BIN=", "PROMQL_ADAPTER_HELM=",
				"hack/gotest.sh -tags e2e -count=1", "./test/e2e/", "./test/release/", "hack/gotest.sh -count=1 -timeout 20m ./hack/image/"},
			[]string{"hack/keda/build.sh", "PROMQL_ADAPTER_KEDA_BIN", "hack/gotest.sh -tags e2e,peers", "-tags install",
				"hack/fuzz.sh", "-fuzz"}},
		{"test-peers", heavy,
			[]string{"hack/keda/build.sh", "PROMQL_ADAPTER_KEDA_BIN=", "hack/gotest.sh -tags e2e,peers", "-run '^TestE2EKeda",
				"hack/gotest.sh -tags install -count=1 -timeout 120m -run '^TestImage$' ./hack/image/",
				"hack/fuzz.sh ./naming/ FuzzBuild 2m", "hack/fuzz.sh ./naming/pacompat/ FuzzBuild 2m",
				"hack/fuzz.sh ./adapter/ FuzzDecode 2m", "hack/fuzz.sh ./adapter/ FuzzProvider 2m"},
			[]string{"-race", "go vet"}},
	} {
		failed := t.Failed()
		for _, w := range tc.want {
			if !strings.Contains(tc.out, w) {
				t.Errorf("make -n %s lacks %q", tc.tier, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(tc.out, n) {
				t.Errorf("make -n %s has %q, which belongs to the other tier", tc.tier, n)
			}
		}
		lines := testLines(tc.out)
		if len(lines) == 0 {
			t.Errorf("make -n %s runs no tests", tc.tier)
		}
		for _, l := range lines {
			if !strings.Contains(l, "hack/gotest.sh") && !strings.Contains(l, "hack/fuzz.sh") {
				t.Errorf("make %s runs go test outside hack/gotest.sh and hack/fuzz.sh, which would pass on zero tests: %s", tc.tier, l)
			}
		}
		if !failed && t.Failed() {
			t.Logf("make -n %s:\n%s", tc.tier, tc.out)
		}
	}

	m := regexp.MustCompile(`hack/gotest.sh -tags e2e,peers .*-run '([^']+)' \./test/e2e/`).FindStringSubmatch(heavy)
	if m == nil {
		t.Fatalf("make -n test-peers has no hack/gotest.sh -tags e2e,peers ... -run '...' ./test/e2e/ line:\n%s", heavy)
	}
	// The peers' e2e tests share the package's helpers (Helm, the control plane): their line sets every variable
	// make test's e2e line sets, and KEDA's.
	envOf := func(out, tags string) []string {
		for _, l := range testLines(strings.ReplaceAll(out, "\\\n", " ")) { // a command continued with \ is one line
			if strings.Contains(l, "hack/gotest.sh -tags "+tags+" ") {
				return regexp.MustCompile(`PROMQL_ADAPTER_[A-Z_]+=`).FindAllString(l, -1)
			}
		}
		t.Fatalf("no hack/gotest.sh -tags %s line", tags)
		return nil
	}
	peersEnv := strings.Join(envOf(heavy, "e2e,peers"), " ")
	for _, v := range append(envOf(light, "e2e"), "PROMQL_ADAPTER_KEDA_BIN=") {
		if !strings.Contains(peersEnv, v) {
			t.Errorf("make test-peers' e2e line does not set %s (make test's e2e line does, and the peers' tests share its helpers)", v)
		}
	}
	run := regexp.MustCompile(m[1])
	base, peers := e2eTests(t, "../test/e2e")
	if len(peers) == 0 {
		t.Fatal("no test in test/e2e is built only with the tag peers")
	}
	for _, name := range peers {
		if !run.MatchString(name) {
			t.Errorf("%s (build tag peers) does not match make test-peers' -run %q: no tier runs it", name, m[1])
		}
	}
	for _, name := range base {
		if run.MatchString(name) {
			t.Errorf("%s (make test's e2e, no tag peers) matches make test-peers' -run %q: both tiers run it", name, m[1])
		}
	}
}

// e2eTests splits the Test functions of dir's files into those built with the tag e2e (make test) and those built
// only when peers is added too (make test-peers).
func e2eTests(t *testing.T, dir string) (base, peers []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		inBase, inPeers := buildsWith(t, file, "e2e"), buildsWith(t, file, "e2e", "peers")
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			switch {
			case inBase:
				base = append(base, fn.Name.Name)
			case inPeers:
				peers = append(peers, fn.Name.Name)
			}
		}
	}
	return base, peers
}

// buildsWith reports whether the file's //go:build line (if any) is satisfied by tags (GOOS and GOARCH aside).
func buildsWith(t *testing.T, file *ast.File, tags ...string) bool {
	t.Helper()
	for _, g := range file.Comments {
		if g.Pos() > file.Package {
			break
		}
		for _, c := range g.List {
			if !constraint.IsGoBuild(c.Text) {
				continue
			}
			expr, err := constraint.Parse(c.Text)
			if err != nil {
				t.Fatal(err)
			}
			return expr.Eval(func(tag string) bool {
				for _, have := range tags {
					if tag == have {
						return true
					}
				}
				return false
			})
		}
	}
	return true
}

// TestFuzzScriptFailsWithoutFuzzing: hack/fuzz.sh fails a run that fuzzed nothing (go test passes when -fuzz
// names no target) and passes one that fuzzed; a stand-in go prints what go test prints in each case.
func TestFuzzScriptFailsWithoutFuzzing(t *testing.T) {
	script, err := filepath.Abs("fuzz.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, goOut string
		pass        bool
	}{
		{"fuzzed", "fuzz: elapsed: 0s, gathering baseline coverage: 0/3 completed\nfuzz: elapsed: 2s, execs: 100 (50/sec)\nPASS\nok  \tx\t2.1s\n", true},
		{"no target", "testing: warning: no fuzz tests to fuzz\nPASS\nok  \tx\t0.1s\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			stub := "#!/bin/sh\ncat <<'EOF'\n" + tc.goOut + "EOF\n"
			if err := os.WriteFile(filepath.Join(bin, "go"), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", script, "./x/", "FuzzX", "1s")
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.pass {
				t.Errorf("hack/fuzz.sh passed=%v, want %v:\n%s", err == nil, tc.pass, out)
			}
		})
	}
}

// TestCIRunRunsBothTiers: .ci/run runs make test and then make test-peers, the second even when the first failed,
// names each tier with its time and result, and fails if either failed; a stand-in make fails the tiers named in
// FAIL_TIERS.
func TestCIRunRunsBothTiers(t *testing.T) {
	script, err := filepath.Abs("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fail     string
		pass     bool
		wantLine []string
	}{
		{"", true, []string{"make test ", "passed", "make test-peers ", "both tiers passed"}},
		{"test", false, []string{"make test ", "FAILED (exit 2)", "make test-peers ", "passed", "failed: make test"}},
		{"test-peers", false, []string{"make test-peers ", "FAILED (exit 2)", "failed: make test-peers"}},
	} {
		t.Run("fail="+tc.fail, func(t *testing.T) {
			bin := t.TempDir()
			ran := filepath.Join(bin, "ran")
			stub := "#!/bin/sh\necho \"$1\" >> " + ran + "\nfor f in $FAIL_TIERS; do [ \"$f\" = \"$1\" ] && exit 2; done\nexit 0\n"
			if err := os.WriteFile(filepath.Join(bin, "make"), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", script)
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "FAIL_TIERS="+tc.fail)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.pass {
				t.Errorf(".ci/run passed=%v, want %v:\n%s", err == nil, tc.pass, out)
			}
			if got, _ := os.ReadFile(ran); string(got) != "test\ntest-peers\n" {
				t.Errorf(".ci/run ran make with %q, want test then test-peers", got)
			}
			_, summary, _ := strings.Cut(string(out), "== .ci/run: tiers")
			rest := summary
			for _, w := range tc.wantLine {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf(".ci/run's summary lacks %q after the previous lines:\n%s", w, summary)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
