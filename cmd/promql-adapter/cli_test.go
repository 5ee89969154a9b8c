package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags/logtest"
)

var update = flag.Bool("update", false, "rewrite the golden help texts")

func run(args ...string) (stdout, stderr string, code int, done bool) {
	var out, errOut bytes.Buffer
	_, code, done = parse(context.Background(), args, &out, &errOut)
	if !done {
		// parse applied the logging flags, which a process does once; let the next case apply its own.
		if err := logsapi.ResetForTest(nil); err != nil {
			panic(err)
		}
	}
	return out.String(), errOut.String(), code, done
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "../../testdata/golden/help/" + name + ".txt"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("help differs from %s (go test ./cmd/promql-adapter -update to accept):\n%s", path, got)
	}
}

// TestHelp: --help, -h and help print the same grouped text (golden), exit 0, and never ask for --config;
// each subcommand answers --help and `help COMMAND`.
func TestHelp(t *testing.T) {
	var first string
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"--config=x.yaml", "--help"}} {
		out, errOut, code, done := run(args...)
		if !done || code != 0 || errOut != "" {
			t.Fatalf("%v: done %v code %d stderr %q", args, done, code, errOut)
		}
		if first == "" {
			first = out
			golden(t, "promql-adapter", out)
		} else if out != first {
			t.Errorf("%v prints another text than --help", args)
		}
	}
	order := []string{"\nCommands:\n", "  check ", "  explain ", "  convert ", "\nRules:\n", "      --config string", "\nPrometheus:\n",
		"      --prometheus-url", "\nKubernetes:\n", "      --lister-kubeconfig", "\nServing:\n", "      --secure-port",
		"\nprometheus-adapter's flags", "      --metrics-relist-interval", "\nOther:\n", "      --version ",
		"\nGeneric API server flags", "      --requestheader-client-ca-file", "\nLogging flags:\n", "  -v, --v Level"}
	last := -1
	for k, s := range order {
		i := strings.Index(first, s)
		if i <= last {
			t.Errorf("%q is missing or not after %q", s, order[max(0, k-1)])
		}
		last = i
	}
	if strings.Contains(first, "is required") && !strings.Contains(first, "(required)") {
		t.Error("help complains about a missing flag")
	}
	for _, sub := range []string{"check", "explain", "convert"} {
		out, errOut, code, _ := run(sub, "--help")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: promql-adapter "+sub) || !strings.Contains(out, "-config") {
			t.Errorf("%s --help: code %d stderr %q\n%s", sub, code, errOut, out)
		}
		golden(t, "promql-adapter-"+sub, out)
		again, _, code, _ := run("help", sub)
		if code != 0 || again != out {
			t.Errorf("help %s differs from %s --help", sub, sub)
		}
	}
}

func TestVersion(t *testing.T) {
	want := "promql-adapter dev (commit unknown, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, _, code, done := run(args...)
		if !done || code != 0 || out != want {
			t.Errorf("%v: code %d %q, want %q", args, code, out, want)
		}
	}
}

func TestArguments(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		code    int
		done    bool
		wantErr string
	}{
		{[]string{"--config=r.yaml"}, 0, false, ""},
		// prometheus-adapter's chart passes its binary's path first.
		{[]string{"/adapter", "--config=r.yaml", "--metrics-relist-interval=1m", "--v=4"}, 0, false, ""},
		{[]string{"--config=r.yaml", "serve"}, 2, true, `unknown command "serve"`},
		{[]string{"--no-such-flag"}, 2, true, "unknown flag: --no-such-flag"},
		{[]string{"help", "frobnicate"}, 2, true, `unknown command "frobnicate"`},
	} {
		_, errOut, code, done := run(tc.args...)
		if code != tc.code || done != tc.done || !strings.Contains(errOut, tc.wantErr) {
			t.Errorf("%v: code %d done %v stderr %q; want %d %v %q", tc.args, code, done, errOut, tc.code, tc.done, tc.wantErr)
		}
	}
}

// TestLoggingFormat runs the built command: --logging-format=json writes JSON log lines on stderr;
// an unknown format fails at start naming the accepted ones.
func TestLoggingFormat(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-adapter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logtest.CheckFormats(t, bin, "starting", "--config="+filepath.Join(t.TempDir(), "missing.yaml"))
}

// TestConvertHelmValues: convert --helm-values keeps the extra arguments the server accepts (its own
// flags, prometheus-adapter's and the logging flags), names the rest on stderr, writes -o, and
// exits 2 naming a key prometheus-adapter's chart does not have.
func TestConvertHelmValues(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "pa.yaml")
	if err := os.WriteFile(in, []byte("extraArguments: [--prometheus-verb=GET, --logging-format=json, --vmodule=x=2, --nope=1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code, _ := run("convert", "--helm-values", in)
	if code != 0 || !strings.Contains(out, "- --prometheus-verb=GET\n") || !strings.Contains(out, "- --logging-format=json\n") ||
		!strings.Contains(out, "- --vmodule=x=2\n") || strings.Contains(out, "nope") {
		t.Errorf("code %d stdout:\n%s", code, out)
	}
	if !strings.Contains(errOut, "convert: warning: extraArguments: --nope=1 left out: promql-adapter has no flag --nope") {
		t.Errorf("stderr: %s", errOut)
	}
	dst := filepath.Join(dir, "ours.yaml")
	if out, _, code, _ = run("convert", "--helm-values", in, "-o", dst); code != 0 || out != "" {
		t.Errorf("-o: code %d stdout %q", code, out)
	}
	if b, err := os.ReadFile(dst); err != nil || !strings.Contains(string(b), "prometheus-verb") {
		t.Errorf("-o file: %v %s", err, b)
	}
	if err := os.WriteFile(in, []byte("replica: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code, _ = run("convert", "--helm-values", in); code != 2 || !strings.Contains(errOut, "not keys of prometheus-adapter's chart: replica") {
		t.Errorf("unknown key: code %d stderr %s", code, errOut)
	}
	if _, errOut, code, _ = run("convert", "--helm-values", in, "--config", in); code != 2 || !strings.Contains(errOut, "exactly one of --config and --helm-values") {
		t.Errorf("both: code %d stderr %s", code, errOut)
	}
}
