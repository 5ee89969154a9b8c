// Package logflags gives the commands component-base's logging flags (--logging-format text or json, -v,
// --vmodule, --log-flush-frequency, ...) beside klog's older flags, and applies them once the command line
// is parsed.
package logflags

import (
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"
)

// Flags are a command's logging flags: component-base's LoggingConfiguration and klog's flags beyond it.
type Flags struct {
	cfg   *logsapi.LoggingConfiguration
	klog  *flag.FlagSet
	names []string
}

// Add registers the logging flags on fs.
func Add(fs *pflag.FlagSet) *Flags {
	f := newFlags()
	before := map[string]bool{}
	fs.VisitAll(func(x *pflag.Flag) { before[x.Name] = true })
	var all pflag.FlagSet
	logsapi.AddFlags(f.cfg, &all)
	all.VisitAll(func(x *pflag.Flag) {
		if !alpha(x.Usage) {
			fs.AddFlag(x)
		}
	})
	fs.AddGoFlagSet(f.klog)
	fs.VisitAll(func(x *pflag.Flag) {
		if !before[x.Name] {
			f.names = append(f.names, x.Name)
		}
	})
	return f
}

// AddGo registers the logging flags on a Go flag.FlagSet.
func AddGo(fs *flag.FlagSet) *Flags {
	f := newFlags()
	before := map[string]bool{}
	fs.VisitAll(func(x *flag.Flag) { before[x.Name] = true })
	var all flag.FlagSet
	logsapi.AddGoFlags(f.cfg, &all)
	all.VisitAll(func(x *flag.Flag) {
		if !alpha(x.Usage) {
			fs.Var(x.Value, x.Name, x.Usage)
		}
	})
	f.klog.VisitAll(func(x *flag.Flag) { fs.Var(x.Value, x.Name, x.Usage) })
	fs.VisitAll(func(x *flag.Flag) {
		if !before[x.Name] {
			f.names = append(f.names, x.Name)
		}
	})
	return f
}

// alpha tells the flags of component-base's alpha options: they need the LoggingAlphaOptions feature gate,
// which the commands do not offer, so they are left out rather than accepted and refused.
func alpha(usage string) bool { return strings.HasPrefix(usage, "[Alpha]") }

// newFlags holds a default configuration and klog's flags except -v and -vmodule, which the configuration holds.
func newFlags() *Flags {
	var all flag.FlagSet
	klog.InitFlags(&all)
	f := &Flags{cfg: logsapi.NewLoggingConfiguration(), klog: flag.NewFlagSet("klog", flag.ContinueOnError)}
	all.VisitAll(func(x *flag.Flag) {
		if x.Name != "v" && x.Name != "vmodule" {
			f.klog.Var(x.Value, x.Name, x.Usage)
		}
	})
	return f
}

// Names are the names of the logging flags, for the help text.
func (f *Flags) Names() []string { return f.names }

// Apply validates the parsed flags and makes them the process's logging; call it once, right after parsing.
// An unknown format's error names the accepted ones; klog's flags other than -v and -vmodule work with the
// text format only, and the json format rejects them.
func (f *Flags) Apply() error {
	c := f.cfg
	if formats := Formats(); !slices.Contains(formats, c.Format) {
		return fmt.Errorf("unknown --logging-format %q; accepted: %s", c.Format, strings.Join(formats, ", "))
	}
	if c.Format != logsapi.DefaultLogFormat {
		var set []string
		f.klog.VisitAll(func(x *flag.Flag) {
			if x.Value.String() != x.DefValue {
				set = append(set, "--"+x.Name)
			}
		})
		if len(set) > 0 {
			return fmt.Errorf("--logging-format=%s: %s work only with --logging-format=text", c.Format, strings.Join(set, ", "))
		}
	}
	if err := logsapi.ValidateAndApply(c, nil); err != nil {
		return fmt.Errorf("logging flags: %w", err)
	}
	if c.Format == logsapi.DefaultLogFormat {
		// component-base's text logger writes klog's format to stderr but ignores klog's other flags
		// (--log_file, --logtostderr=false, ...); klog's own output honours them, as before --logging-format.
		// -v and -vmodule are applied to klog either way.
		klog.ClearLogger()
	}
	return nil
}

var quoted = regexp.MustCompile(`"([^"]+)"`)

// Formats are the accepted --logging-format values, as component-base's own flag lists them.
func Formats() []string {
	fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	logsapi.AddFlags(logsapi.NewLoggingConfiguration(), fs)
	var formats []string
	for _, m := range quoted.FindAllStringSubmatch(fs.Lookup("logging-format").Usage, -1) {
		formats = append(formats, m[1])
	}
	return formats
}
