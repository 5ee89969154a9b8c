package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/uuid"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/promql-adapter/promql-adapter/apiservice"
)

// APIServiceOptions are the flags of the APIService claim and of the shared TLS Secret (apiservice/).
type APIServiceOptions struct {
	Names   []string // --apiservice
	Service string   // --apiservice-service NAMESPACE/NAME:PORT
	CAFile  string   // --apiservice-ca-file
	Secret  string   // --tls-secret NAMESPACE/NAME
}

// APIServiceFlagNames are the flags addAPIServiceFlags registers, for --help's grouping.
var APIServiceFlagNames = []string{"apiservice", "apiservice-service", "apiservice-ca-file", "tls-secret"}

func (o *Options) addAPIServiceFlags(fs *pflag.FlagSet) {
	a := &o.APIService
	fs.StringArrayVar(&a.Names, "apiservice", a.Names,
		"an APIService to claim, e.g. v1beta1.external.metrics.k8s.io (repeatable): the leader among the replicas (a Lease named after --apiservice-service's Service, + \"-apiservices\") points it at --apiservice-service with our CA within seconds whenever anyone rewrites it (another Helm release's upgrade, KEDA's operator), records an Event on it, and /readyz/apiservices says whether each is held. It is never created: it must exist")
	fs.StringVar(&a.Service, "apiservice-service", a.Service,
		"NAMESPACE/NAME:PORT of our Service, which the claimed APIServices must point at and --tls-secret's certificate is made for")
	fs.StringVar(&a.CAFile, "apiservice-ca-file", a.CAFile,
		"CA (PEM) the claimed APIServices must carry as caBundle, re-read on change, e.g. the ca.crt of a mounted serving Secret; empty, without --tls-secret: caBundle is left as it is")
	fs.StringVar(&a.Secret, "tls-secret", a.Secret,
		"NAMESPACE/NAME of a Secret holding our CA and serving certificate (ca.crt, ca.key, tls.crt, tls.key): the leader makes them when it is absent, keeps them across restarts and renews the certificate with the same CA before it expires; every replica serves it (reloaded on change) instead of --tls-cert-file, and the claimed APIServices get its CA. Needs --apiservice-service")
}

// validateAPIService checks the claim's flags without I/O.
func (o *Options) validateAPIService() error {
	a := o.APIService
	var errs []error
	if len(a.Names) == 0 && a.Secret == "" {
		if a.Service != "" || a.CAFile != "" {
			errs = append(errs, errors.New("--apiservice-service and --apiservice-ca-file need --apiservice or --tls-secret"))
		}
		return errors.Join(errs...)
	}
	if a.Service == "" {
		errs = append(errs, errors.New("--apiservice and --tls-secret need --apiservice-service NAMESPACE/NAME:PORT"))
	} else if _, err := apiservice.ParseService(a.Service); err != nil {
		errs = append(errs, err)
	}
	for _, n := range a.Names {
		if _, _, err := apiservice.ParseName(n); err != nil {
			errs = append(errs, err)
		}
	}
	if a.Secret != "" {
		if ns, name, ok := strings.Cut(a.Secret, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("--tls-secret %q: want NAMESPACE/NAME", a.Secret))
		}
		if a.CAFile != "" {
			errs = append(errs, errors.New("--apiservice-ca-file and --tls-secret exclude each other: the Secret's CA is the caBundle"))
		}
		if sc := o.Server.SecureServing.ServerCert.CertKey; sc.CertFile != "" || sc.KeyFile != "" {
			errs = append(errs, errors.New("--tls-secret and --tls-cert-file/--tls-private-key-file exclude each other"))
		}
	}
	if o.TrustLoopback && o.ListerKubeconfig == "" {
		errs = append(errs, errors.New("--apiservice and --tls-secret need a cluster: give --lister-kubeconfig with --trust-loopback"))
	}
	return errors.Join(errs...)
}

// claim is the APIService controller and shared Secret of one server, nil parts when not asked for.
type claim struct {
	ctrl  *apiservice.Controller
	certs *apiservice.CertSecret
}

// newClaim builds the controller and the Secret from the flags (nil when none is given).
func newClaim(o *Options, kubeConfig *rest.Config) (*claim, error) {
	a := o.APIService
	if len(a.Names) == 0 && a.Secret == "" {
		return nil, nil
	}
	if kubeConfig == nil {
		return nil, errors.New("--apiservice and --tls-secret need a cluster: give --lister-kubeconfig or run in a cluster")
	}
	svc, err := apiservice.ParseService(a.Service)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(kubeConfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	agg, err := aggregator.NewForConfig(kubeConfig)
	if err != nil {
		return nil, fmt.Errorf("apiregistration client: %w", err)
	}
	cl := &claim{}
	if a.Secret != "" {
		ns, name, _ := strings.Cut(a.Secret, "/")
		cl.certs = &apiservice.CertSecret{SecretNamespace: ns, SecretName: name, DNSNames: svc.DNSNames(), Client: kube}
	}
	host, _ := os.Hostname()
	co := apiservice.Options{Names: a.Names, Service: svc, Certs: cl.certs, Lease: svc.Name + "-apiservices", Identity: host + "_" + string(uuid.NewUUID())}
	if a.CAFile != "" {
		path := a.CAFile
		co.CABundle = func() ([]byte, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("--apiservice-ca-file: %w", err)
			}
			if len(b) == 0 {
				return nil, fmt.Errorf("--apiservice-ca-file %s is empty", path)
			}
			return b, nil
		}
	}
	if cl.ctrl, err = apiservice.New(kube, agg, co); err != nil {
		return nil, err
	}
	return cl, nil
}

// install serves the Secret's certificate (when --tls-secret) and adds the apiservices readyz check.
func (cl *claim) install(cfg *genericapiserver.RecommendedConfig) {
	if cl == nil {
		return
	}
	if cl.certs != nil {
		cl.certs.Fallback = cfg.SecureServing.Cert
		cfg.SecureServing.Cert = cl.certs
	}
}

// addCheck adds /readyz/apiservices, and /readyz/tls-secret with --tls-secret.
func (cl *claim) addCheck(s *genericapiserver.GenericAPIServer) error {
	if cl == nil {
		return nil
	}
	checks := []healthz.HealthChecker{healthz.NamedCheck(apiservice.CheckName, cl.ctrl.Check)}
	if cl.certs != nil {
		checks = append(checks, healthz.NamedCheck(apiservice.SecretCheckName, cl.certs.Check))
	}
	return s.AddReadyzChecks(checks...)
}

// run runs the controller until ctx ends.
func (cl *claim) run(ctx context.Context) {
	if cl != nil {
		go cl.ctrl.Run(ctx)
	}
}
