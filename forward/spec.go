// Package forward answers the custom and external metrics requests promql-adapter does not serve
// by proxying them to the adapters that do (KEDA's metrics server, prometheus-adapter, a vendor's
// adapter), so one APIService can hold a metrics API while others keep serving their metrics.
package forward

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// The API groups an upstream can serve.
const (
	External = "external.metrics.k8s.io"
	Custom   = "custom.metrics.k8s.io"
)

// How promql-adapter authenticates to an upstream.
const (
	AuthServiceAccount = "serviceaccount" // the credentials we use for kube-apiserver: in a pod, our ServiceAccount token
	// AuthServiceAccountInsecure is AuthServiceAccount also over plain HTTP or unverified TLS, an explicit opt-in
	// (logged as a warning at start): whoever is on the path can read and replay the token.
	AuthServiceAccountInsecure = "serviceaccount-insecure"
	AuthCert                   = "cert"  // a client certificate (cert-file, key-file)
	AuthToken                  = "token" // a bearer token read from token-file (re-read as it rotates)
	AuthNone                   = "none"
)

// Spec is one upstream adapter, from --forward-external or --forward-custom.
type Spec struct {
	API        string // External or Custom
	Name       string // in logs, metrics and errors; the URL's host unless name= is given
	URL        string
	CAFile     string // CA bundle verifying the upstream's serving certificate
	ClusterCA  bool   // verify with the cluster CA (the one our kube-apiserver client trusts)
	ServerName string // TLS server name, when the URL's host is not in the upstream's certificate
	Insecure   bool   // do not verify the upstream's serving certificate
	Auth       string
	CertFile   string
	KeyFile    string
	TokenFile  string
	// Impersonate sends the caller's identity as Impersonate-User/-Group/-Extra headers; the upstream
	// acts as the caller only if it honours impersonation and we may impersonate (RBAC verb impersonate).
	Impersonate bool
	// CatchAll forwards every metric of its API that neither promql-adapter nor an upstream before it lists,
	// listed by this upstream or not: KEDA's metrics server lists only a placeholder ("externalmetrics"),
	// never its ScaledObjects' metric names.
	CatchAll bool
}

// ParseSpec reads "URL[,key=value...]" for api. Keys: name, ca-file, cluster-ca, server-name,
// insecure-skip-tls-verify, catch-all, auth (serviceaccount, serviceaccount-insecure, cert, token, none),
// cert-file, key-file, token-file, identity (ours, impersonate). auth defaults to serviceaccount, which
// needs https with a verified certificate.
func ParseSpec(api, s string) (Spec, error) {
	flag := "--forward-external"
	if api == Custom {
		flag = "--forward-custom"
	}
	parts := strings.Split(s, ",")
	sp := Spec{API: api, URL: strings.TrimSpace(parts[0])}
	u, err := url.Parse(sp.URL)
	switch {
	case err != nil:
		return sp, fmt.Errorf("%s %q: the first field must be the upstream's URL: %w", flag, s, err)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return sp, fmt.Errorf("%s %q: the first field must be the upstream's URL, https://host[:port]", flag, s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return sp, fmt.Errorf("%s %q: the URL may have a path but no query, fragment or user", flag, s)
	}
	sp.Name = u.Host
	var identity string
	for _, kv := range parts[1:] {
		k, v, hasValue := strings.Cut(strings.TrimSpace(kv), "=")
		bad := func(why string) error { return fmt.Errorf("%s %q: %s: %s", flag, s, k, why) }
		boolean := func() (bool, error) {
			if !hasValue {
				return true, nil
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return false, bad("want true or false")
			}
			return b, nil
		}
		if k != "cluster-ca" && k != "insecure-skip-tls-verify" && k != "catch-all" && (!hasValue || v == "") {
			return sp, bad("want key=value")
		}
		switch k {
		case "name":
			sp.Name = v
		case "ca-file":
			sp.CAFile = v
		case "cluster-ca":
			if sp.ClusterCA, err = boolean(); err != nil {
				return sp, err
			}
		case "server-name":
			sp.ServerName = v
		case "insecure-skip-tls-verify":
			if sp.Insecure, err = boolean(); err != nil {
				return sp, err
			}
		case "catch-all":
			if sp.CatchAll, err = boolean(); err != nil {
				return sp, err
			}
		case "auth":
			switch v {
			case AuthServiceAccount, AuthServiceAccountInsecure, AuthCert, AuthToken, AuthNone:
				sp.Auth = v
			default:
				return sp, bad("want serviceaccount, serviceaccount-insecure, cert, token or none")
			}
		case "cert-file":
			sp.CertFile = v
		case "key-file":
			sp.KeyFile = v
		case "token-file":
			sp.TokenFile = v
		case "identity":
			switch v {
			case "ours", "impersonate":
				identity = v
			default:
				return sp, bad("want ours or impersonate")
			}
		default:
			return sp, fmt.Errorf("%s %q: unknown key %q (want name, ca-file, cluster-ca, server-name, insecure-skip-tls-verify, catch-all, auth, cert-file, key-file, token-file, identity)", flag, s, k)
		}
	}
	sp.Impersonate = identity == "impersonate"
	if sp.Auth == "" {
		switch {
		case sp.CertFile != "" || sp.KeyFile != "":
			sp.Auth = AuthCert
		case sp.TokenFile != "":
			sp.Auth = AuthToken
		default:
			sp.Auth = AuthServiceAccount
		}
	}
	var errs []error
	// Our ServiceAccount token is a credential for kube-apiserver with our rights: it goes only where
	// the connection is encrypted and the server verified, unless auth=serviceaccount-insecure says otherwise.
	if sp.Auth == AuthServiceAccount && (u.Scheme == "http" || sp.Insecure) {
		how := "over plain HTTP (" + sp.URL + ")"
		if sp.Insecure {
			how = "to a server whose certificate is not verified (insecure-skip-tls-verify)"
		}
		errs = append(errs, fmt.Errorf("upstream %s: auth=serviceaccount (the default) would send our ServiceAccount token, a credential for kube-apiserver, %s, where anyone on the path can read it: "+
			"use https with ca-file= or cluster-ca, or auth=none, auth=token (a token of the upstream's own audience) or auth=cert, or auth=serviceaccount-insecure to send it anyway", sp.Name, how))
	}
	if (sp.Auth == AuthCert) != (sp.CertFile != "" && sp.KeyFile != "") || (sp.CertFile == "") != (sp.KeyFile == "") {
		errs = append(errs, errors.New("auth=cert needs both cert-file and key-file, and they need auth=cert"))
	}
	if (sp.Auth == AuthToken) != (sp.TokenFile != "") {
		errs = append(errs, errors.New("auth=token needs token-file, and token-file needs auth=token"))
	}
	if sp.Insecure && (sp.CAFile != "" || sp.ClusterCA) {
		errs = append(errs, errors.New("insecure-skip-tls-verify excludes ca-file and cluster-ca"))
	}
	if sp.CAFile != "" && sp.ClusterCA {
		errs = append(errs, errors.New("give ca-file or cluster-ca, not both"))
	}
	if err := errors.Join(errs...); err != nil {
		return sp, fmt.Errorf("%s %q: %w", flag, s, err)
	}
	return sp, nil
}

// RestConfig is the client-go configuration that reaches the upstream. kube is our kube-apiserver
// client configuration (nil without a cluster); auth=serviceaccount and cluster-ca take from it.
func (s Spec) RestConfig(kube *rest.Config) (*rest.Config, error) {
	if kube == nil && (s.Auth == AuthServiceAccount || s.Auth == AuthServiceAccountInsecure || s.ClusterCA) {
		return nil, fmt.Errorf("upstream %s: auth=serviceaccount and cluster-ca need our cluster credentials (run in a pod or give --lister-kubeconfig); use auth=cert, auth=token or auth=none and ca-file", s.Name)
	}
	c := &rest.Config{}
	switch s.Auth {
	case AuthServiceAccount, AuthServiceAccountInsecure:
		// Our own credentials, whatever form they take (in a pod: the projected token file,
		// re-read as the kubelet rotates it); never the kube-apiserver's address or CA.
		k := rest.CopyConfig(kube)
		c.BearerToken, c.BearerTokenFile = k.BearerToken, k.BearerTokenFile
		c.Username, c.Password = k.Username, k.Password
		c.ExecProvider, c.AuthProvider, c.AuthConfigPersister = k.ExecProvider, k.AuthProvider, k.AuthConfigPersister
		c.CertFile, c.KeyFile, c.CertData, c.KeyData = k.CertFile, k.KeyFile, k.CertData, k.KeyData
	case AuthCert:
		c.CertFile, c.KeyFile = s.CertFile, s.KeyFile
	case AuthToken:
		c.BearerTokenFile = s.TokenFile
	}
	c.Host = s.URL
	c.UserAgent = "promql-adapter-forward"
	if s.ClusterCA {
		c.CAFile, c.CAData = kube.CAFile, kube.CAData
	} else {
		c.CAFile = s.CAFile
	}
	c.ServerName = s.ServerName
	c.Insecure = s.Insecure
	return c, nil
}
