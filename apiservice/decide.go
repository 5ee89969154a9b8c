// Package apiservice claims the APIServices the adapter serves and keeps them pointing at it: a leader-elected
// controller puts back their service reference and caBundle within seconds of anyone rewriting them (another
// Helm release's upgrade, KEDA's operator rotating its certificate), records an Event on each change and
// reports at /readyz/apiservices whether it holds each one. It can also keep the adapter's serving CA and
// certificate in a Secret all replicas share (CertSecret), so that no chart has to make them.
package apiservice

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

// FieldManager is the name the controller writes APIServices and Secrets under.
const FieldManager = "promql-adapter"

// Service is the Service the claimed APIServices must point at.
type Service struct {
	Namespace, Name string
	Port            int32
}

// String is the NAMESPACE/NAME:PORT form of --apiservice-service.
func (s Service) String() string { return fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, s.Port) }

// DNSNames are the names a serving certificate of the Service must hold; the aggregator verifies NAME.NAMESPACE.svc.
func (s Service) DNSNames() []string {
	return []string{s.Name, s.Name + "." + s.Namespace, s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace + ".svc.cluster.local"}
}

// ParseService reads NAMESPACE/NAME:PORT.
func ParseService(s string) (Service, error) {
	nsName, port, ok := strings.Cut(s, ":")
	ns, name, ok2 := strings.Cut(nsName, "/")
	if !ok || !ok2 || ns == "" || name == "" {
		return Service{}, fmt.Errorf("--apiservice-service %q: want NAMESPACE/NAME:PORT", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Service{}, fmt.Errorf("--apiservice-service %q: port %q is not a number from 1 to 65535", s, port)
	}
	return Service{Namespace: ns, Name: name, Port: int32(p)}, nil
}

// ParseName splits an APIService name, VERSION.GROUP (e.g. v1beta1.external.metrics.k8s.io).
func ParseName(name string) (version, group string, err error) {
	version, group, ok := strings.Cut(name, ".")
	if !ok || version == "" || !strings.Contains(group, ".") || !strings.HasPrefix(version, "v") {
		return "", "", fmt.Errorf("--apiservice %q: want VERSION.GROUP, e.g. v1beta1.external.metrics.k8s.io", name)
	}
	return version, group, nil
}

// Decision is what the controller does about one APIService.
type Decision struct {
	// Update is the APIService to write; nil when there is nothing to write.
	Update *apiregv1.APIService
	// Held says the APIService already points at our Service with our CA.
	Held bool
	// Reason says why it is not held ("" when held).
	Reason string
	// Changes name what Update changes, for the Event and the log.
	Changes []string
}

// Decide compares an APIService (nil: absent) with what we want: our Service, and caBundle ca (nil: leave the
// caBundle as it is). It changes only the service reference, the caBundle and insecureSkipTLSVerify (which
// cannot be set beside a caBundle); an absent APIService is not created.
func Decide(cur *apiregv1.APIService, svc Service, ca []byte) Decision {
	if cur == nil {
		return Decision{Reason: "absent"}
	}
	var reasons, changes []string
	want := apiregv1.ServiceReference{Namespace: svc.Namespace, Name: svc.Name, Port: &svc.Port}
	if !sameService(cur.Spec.Service, want) {
		from := "local (no service)"
		if s := cur.Spec.Service; s != nil {
			from = fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, portOf(s))
		}
		reasons = append(reasons, "points at "+from)
		changes = append(changes, fmt.Sprintf("service %s -> %s", from, svc))
	}
	if ca != nil {
		if cur.Spec.InsecureSkipTLSVerify {
			reasons = append(reasons, "skips TLS verification")
			changes = append(changes, "insecureSkipTLSVerify cleared")
		}
		if !bytes.Equal(cur.Spec.CABundle, ca) {
			what := "caBundle differs from our CA"
			if len(cur.Spec.CABundle) == 0 {
				what = "caBundle empty"
			}
			reasons = append(reasons, what)
			changes = append(changes, "caBundle set to our CA")
		}
	}
	if len(changes) == 0 {
		return Decision{Held: true}
	}
	up := cur.DeepCopy()
	up.Spec.Service = &want
	if ca != nil {
		up.Spec.CABundle = append([]byte(nil), ca...)
		up.Spec.InsecureSkipTLSVerify = false
	}
	return Decision{Update: up, Reason: strings.Join(reasons, ", "), Changes: changes}
}

func sameService(a *apiregv1.ServiceReference, b apiregv1.ServiceReference) bool {
	return a != nil && a.Namespace == b.Namespace && a.Name == b.Name && portOf(a) == *b.Port
}

// portOf is a service reference's port; the API's default is 443.
func portOf(s *apiregv1.ServiceReference) int32 {
	if s.Port == nil {
		return 443
	}
	return *s.Port
}
