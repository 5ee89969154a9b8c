package naming

// RuleFault is a request that fails through the fault of the rule serving the metric, not of the
// request: a prometheus-adapter rule loaded although unusable, or a query template that does not
// render PromQL. The adapter answers it with Code, the status class prometheus-adapter answers
// the same failure with (404 or 500), and Err, which names the rule.
type RuleFault struct {
	Code int // HTTP status to answer with
	Err  error
}

func (e *RuleFault) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *RuleFault) Unwrap() error { return e.Err }
