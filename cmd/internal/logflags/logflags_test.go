package logflags

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

func TestFormats(t *testing.T) {
	if got := Formats(); !slices.Equal(got, []string{"json", "text"}) {
		t.Errorf("Formats() = %q, want json and text", got)
	}
}

// TestApplyRejects: bad flags fail before anything is applied, with an error naming what is wrong.
func TestApplyRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--logging-format=xml"}, `unknown --logging-format "xml"; accepted: json, text`},
		{[]string{"--logging-format="}, `unknown --logging-format ""; accepted: json, text`},
		{[]string{"--logging-format=json", "--vmodule=x=2"}, "vmodule: Forbidden: Only supported for text log format"},
		{[]string{"--logging-format=json", "--log_file=x.log", "--logtostderr=false"}, "--logging-format=json: --log_file, --logtostderr work only with --logging-format=text"},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		f := Add(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err := f.Apply()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		if err == nil {
			_ = logsapi.ResetForTest(nil)
		}
	}
}

// TestFlags: both flag set kinds get the configuration's flags (not the alpha ones, whose feature gate the
// commands lack) and klog's others, each once, and parse -v.
func TestFlags(t *testing.T) {
	want := []string{"logging-format", "v", "vmodule", "log-flush-frequency", "logtostderr", "add_dir_header"}
	pfs := pflag.NewFlagSet("p", pflag.ContinueOnError)
	pfs.String("config", "", "")
	pnames := Add(pfs).Names()
	gfs := flag.NewFlagSet("g", flag.ContinueOnError)
	gnames := AddGo(gfs).Names()
	for _, names := range [][]string{pnames, gnames} {
		for _, n := range want {
			if !slices.Contains(names, n) {
				t.Errorf("%q missing from %q", n, names)
			}
		}
		for _, n := range []string{"config", "log-json-split-stream", "log-text-info-buffer-size"} {
			if slices.Contains(names, n) {
				t.Errorf("%q is named: %q", n, names)
			}
		}
	}
	if err := pfs.Parse([]string{"-v=3", "--logtostderr=true"}); err != nil {
		t.Error(err)
	}
	if err := gfs.Parse([]string{"-v=3", "-logtostderr=true"}); err != nil {
		t.Error(err)
	}
}

// TestTextKeepsKlogFlags: with the text format, klog's own flags (here --log_file) work as before.
func TestTextKeepsKlogFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := Add(fs)
	if err := fs.Parse([]string{"--log_file=" + path, "--logtostderr=false", "-v=1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = fs.Parse([]string{"--log_file=", "--logtostderr=true"})
		_ = logsapi.ResetForTest(nil)
	})
	klog.V(1).InfoS("to the file", "n", 1)
	klog.Flush()
	got, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(got), `"to the file" n=1`) {
		t.Errorf("--log_file %s: %v %q", path, err, got)
	}
}
