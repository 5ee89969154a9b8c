// Package help prints a command's usage: what it does, its subcommands, then its flags in named
// groups, the command's own first and the generic (API server, logging) ones after.
package help

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// Group is a titled set of flags, named by flag name; names that fs does not define are skipped.
type Group struct {
	Title string
	Names []string
}

// Usage describes a command for its help text.
type Usage struct {
	Name        string      // the command's name, in errors (ParseGo)
	Intro       string      // the first lines: what the command does and how it is called
	Subcommands [][2]string // name, one-line description
	Groups      []Group     // the command's own flags, in this order
	// Rest is the title of the flags in no group; RestSplit, if set, moves some of them (by name)
	// into a group of their own, printed last under RestSplit's title.
	Rest      string
	RestSplit *Group
	Footer    string
}

// Write prints u for fs on w.
func (u Usage) Write(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintln(w, strings.TrimRight(u.Intro, "\n"))
	if len(u.Subcommands) > 0 {
		fmt.Fprintln(w, "\nCommands:")
		width := 0
		for _, s := range u.Subcommands {
			width = max(width, len(s[0]))
		}
		for _, s := range u.Subcommands {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s[0], s[1])
		}
	}
	grouped := map[string]bool{}
	for _, g := range u.Groups {
		for _, n := range g.Names {
			grouped[n] = true
		}
	}
	var split map[string]bool
	if u.RestSplit != nil {
		split = map[string]bool{}
		for _, n := range u.RestSplit.Names {
			split[n] = true
			grouped[n] = true
		}
	}
	for _, g := range u.Groups {
		sub := newSet()
		for _, n := range g.Names {
			if f := fs.Lookup(n); f != nil {
				sub.AddFlag(f)
			}
		}
		section(w, g.Title, sub)
	}
	section(w, u.Rest, pick(fs, func(f *pflag.Flag) bool { return !grouped[f.Name] }))
	if u.RestSplit != nil {
		section(w, u.RestSplit.Title, pick(fs, func(f *pflag.Flag) bool { return split[f.Name] }))
	}
	if u.Footer != "" {
		fmt.Fprintln(w, "\n"+strings.TrimRight(u.Footer, "\n"))
	}
}

func newSet() *pflag.FlagSet {
	s := pflag.NewFlagSet("", pflag.ContinueOnError)
	s.SortFlags = false
	return s
}

// pick is the flags of fs that keep selects, in fs's order.
func pick(fs *pflag.FlagSet, keep func(*pflag.Flag) bool) *pflag.FlagSet {
	sub := newSet()
	fs.VisitAll(func(f *pflag.Flag) {
		if keep(f) {
			sub.AddFlag(f)
		}
	})
	return sub
}

// section prints a titled flag set, nothing when it is empty.
func section(w io.Writer, title string, fs *pflag.FlagSet) {
	if fs.HasFlags() {
		fmt.Fprintf(w, "\n%s:\n%s", title, fs.FlagUsagesWrapped(0))
	}
}
