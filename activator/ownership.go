package activator

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// Ownership is the operator's map of which hosts each namespace may route:
// namespace → host suffixes. A namespace may claim a host equal to one of its
// suffixes or a subdomain of one ("example.com" allows "example.com" and
// "shop.example.com"). A nil Ownership allows every namespace every host
// (then only the oldest-claim rule of NewTable binds a host to a namespace).
type Ownership map[string][]string

// Allows reports whether namespace ns may claim host.
func (o Ownership) Allows(ns, host string) bool {
	if o == nil {
		return true
	}
	for _, s := range o[ns] {
		if host == s || strings.HasSuffix(host, "."+s) {
			return true
		}
	}
	return false
}

// ParseOwnership reads an ownership map from YAML or JSON: a mapping of
// namespace to a list of host suffixes, for example
//
//	shop: [shop.example.com]
//	blog: [blog.example.com, example.org]
//
// Names are lowercased; a bad namespace or suffix is an error naming it.
func ParseOwnership(data []byte) (Ownership, error) {
	raw := map[string][]string{}
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("host ownership: want a map of namespace to a list of host suffixes: %w", err)
	}
	o := Ownership{}
	var errs []string
	for ns, suffixes := range raw {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("namespace %q: %s", ns, strings.Join(msgs, "; ")))
			continue
		}
		for _, s := range suffixes {
			s = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
			if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
				errs = append(errs, fmt.Sprintf("namespace %s: host suffix %q: %s", ns, s, strings.Join(msgs, "; ")))
				continue
			}
			o[ns] = append(o[ns], s)
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("host ownership: %s", strings.Join(errs, ", "))
	}
	return o, nil
}

// LoadOwnership reads and parses an ownership file.
func LoadOwnership(path string) (Ownership, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host ownership: %w", err)
	}
	o, err := ParseOwnership(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

// WatchOwnership reads path every interval until ctx ends and calls apply
// with the new map whenever its content changes (a mounted ConfigMap is
// replaced atomically, so polling the content is enough). A file that no
// longer parses is logged and the last good map stays in force.
func WatchOwnership(ctx context.Context, path string, last []byte, interval time.Duration, apply func(Ownership)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil {
			klog.ErrorS(err, "host ownership file unreadable; the last good map stays", "path", path)
			continue
		}
		if bytes.Equal(data, last) {
			continue
		}
		last = data
		o, err := ParseOwnership(data)
		if err != nil {
			klog.ErrorS(err, "host ownership file rejected; the last good map stays", "path", path)
			continue
		}
		klog.InfoS("host ownership map reloaded", "path", path, "namespaces", len(o))
		apply(o)
	}
}
