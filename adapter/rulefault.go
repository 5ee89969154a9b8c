package adapter

import (
	"errors"
	"net/http"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promql-adapter/promql-adapter/naming"
)

// buildFailed turns an error building a query into a status: the rule's fault (naming.RuleFault)
// gets the status prometheus-adapter answers it with; anything else is the request's fault (400).
func buildFailed(m *naming.Metric, err error) error {
	kind := "metric"
	if m.External {
		kind = "external metric"
	}
	var rf *naming.RuleFault
	if errors.As(err, &rf) {
		reason := metav1.StatusReasonInternalError
		if rf.Code == http.StatusNotFound {
			reason = metav1.StatusReasonNotFound
		}
		return newStatus(rf.Code, reason, "%s %q cannot be answered: %v", kind, m.Name, err)
	}
	return newStatus(http.StatusBadRequest, metav1.StatusReasonBadRequest, "%s %q: %v", kind, m.Name, err)
}

// rejected reports whether Prometheus refused the query itself, which retrying will not change:
// bad_data (400: it does not parse) and execution (422: e.g. many-to-many matching, too many
// samples), as Prometheus and VictoriaMetrics (whose errorType is the status code) report them.
func rejected(err error) bool {
	var qe *QueryError
	if errors.As(err, &qe) && qe.Bad {
		return true
	}
	var perr *promv1.Error
	if !errors.As(err, &perr) {
		return false
	}
	switch perr.Type {
	case promv1.ErrBadData, promv1.ErrExec, "400", "422":
		return true
	}
	return false
}
