package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
)

// CoalesceOptions share one namespace-wide query among the requests for the same rule, namespace
// and metric selector (package coalesce).
type CoalesceOptions struct {
	// Freshness is the default bound on a shared answer's age; 0 shares only for rules that set freshness.
	Freshness time.Duration
	// MaxEntries bounds the shared answers kept; past it the least recently stored goes.
	MaxEntries int
}

// CoalesceFlagNames are the coalescing flags, for --help's grouping.
var CoalesceFlagNames = []string{"coalesce-freshness", "coalesce-max-entries"}

// defaultCoalesceEntries is --coalesce-max-entries's default.
const defaultCoalesceEntries = 10000

// addCoalesceFlags registers the coalescing flags.
func (o *Options) addCoalesceFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Coalesce.Freshness, "coalesce-freshness", o.Coalesce.Freshness,
		fmt.Sprintf("answer the requests for the same rule, namespace and metric selector from one namespace-wide query no older than this, each filtered to its own objects (at most %s; a rule's freshness overrides it); 0 runs a query per request, except for rules that set freshness", model.Duration(naming.MaxFreshness)))
	fs.IntVar(&o.Coalesce.MaxEntries, "coalesce-max-entries", o.Coalesce.MaxEntries,
		"most shared answers kept for coalescing; past it the least recently stored goes")
}

// validateCoalesce checks the coalescing flags.
func (o *Options) validateCoalesce() error {
	var errs []error
	if f := o.Coalesce.Freshness; f < 0 || f > naming.MaxFreshness {
		errs = append(errs, fmt.Errorf("--coalesce-freshness %s: want 0 (off) up to %s", f, model.Duration(naming.MaxFreshness)))
	}
	if o.Coalesce.MaxEntries < 1 {
		errs = append(errs, errors.New("--coalesce-max-entries must be at least 1"))
	}
	return errors.Join(errs...)
}

// coalescing sets the provider's coalescing cache and default freshness from the flags. The
// cache always exists, so rules that set freshness share even when the default is off.
func (o *Options) coalescing(popts *adapter.Options) {
	popts.Coalesce = coalesce.New[[]adapter.Sample](o.Coalesce.MaxEntries, naming.MaxFreshness)
	popts.Freshness = o.Coalesce.Freshness
}
