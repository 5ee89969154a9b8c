package help

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// WriteGo prints u for gofs, a command's Go flag set (flag.CommandLine): the flags named by logging
// under "Logging flags", last, and those in no group under u.Rest ("Other flags" when empty).
func (u Usage) WriteGo(w io.Writer, gofs *flag.FlagSet, logging []string) {
	fs := pflag.NewFlagSet(u.Name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.AddGoFlagSet(gofs)
	if u.Rest == "" {
		u.Rest = "Other flags"
	}
	u.RestSplit = &Group{Title: "Logging flags", Names: logging}
	u.Write(w, fs)
}

// ParseGo parses args into gofs, a command's Go flag set whose logging flags logging names. -h, --help
// and the help command print the grouped help (WriteGo) on stdout; a bad flag or an unexpected argument
// is reported on stderr. done tells the caller to exit with code instead of running.
func (u Usage) ParseGo(gofs *flag.FlagSet, logging, args []string, stdout, stderr io.Writer) (code int, done bool) {
	gofs.Init(u.Name, flag.ContinueOnError)
	gofs.SetOutput(io.Discard)
	gofs.Usage = func() {}
	if err := gofs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			u.WriteGo(stdout, gofs, logging)
			return 0, true
		}
		fmt.Fprintf(stderr, "%s: %v\nRun \"%s --help\" for the flags.\n", u.Name, err, u.Name)
		return 2, true
	}
	if gofs.NArg() > 0 {
		if gofs.Arg(0) == "help" && gofs.NArg() == 1 {
			u.WriteGo(stdout, gofs, logging)
			return 0, true
		}
		fmt.Fprintf(stderr, "%s: unexpected argument %q (run \"%s --help\")\n", u.Name, gofs.Arg(0), u.Name)
		return 2, true
	}
	return 0, false
}
