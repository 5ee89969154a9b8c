package activator

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func TestParseOwnership(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Ownership
		wantErr  string
	}{
		{"yaml", "shop: [Shop.Example.com, example.org.]\nblog: [blog.example.com]\n", Ownership{"shop": {"shop.example.com", "example.org"}, "blog": {"blog.example.com"}}, ""},
		{"json", `{"shop": ["shop.example.com"]}`, Ownership{"shop": {"shop.example.com"}}, ""},
		{"empty: nobody may route", "", Ownership{}, ""},
		{"bad namespace", "Shop_1: [a.example]", nil, `namespace "Shop_1"`},
		{"bad suffix", "shop: [\"*.example.com\"]", nil, `host suffix "*.example.com"`},
		{"not a map of lists", "shop: a.example", nil, "want a map of namespace to a list of host suffixes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOwnership([]byte(tc.in))
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr == "" && len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for ns, w := range tc.want {
				if strings.Join(got[ns], ",") != strings.Join(w, ",") {
					t.Fatalf("%s: got %v, want %v", ns, got[ns], w)
				}
			}
		})
	}
}

func TestOwnershipAllows(t *testing.T) {
	o := Ownership{"shop": {"shop.example.com", "example.org"}}
	for _, tc := range []struct {
		ns, host string
		want     bool
	}{
		{"shop", "shop.example.com", true},
		{"shop", "www.shop.example.com", true},
		{"shop", "example.org", true},
		{"shop", "a.b.example.org", true},
		{"shop", "evilshop.example.com", false}, // a suffix, but not a subdomain
		{"shop", "example.com", false},
		{"blog", "shop.example.com", false}, // not in the map: nothing
	} {
		if got := o.Allows(tc.ns, tc.host); got != tc.want {
			t.Errorf("Allows(%s, %s) = %v, want %v", tc.ns, tc.host, got, tc.want)
		}
	}
	if !Ownership(nil).Allows("any", "any.example") {
		t.Error("no map must allow every claim")
	}
}

// TestTableOwnership: the map binds hosts to namespaces; without it, the oldest claim (creationTimestamp,
// then UID) holds a host; refusals name the host and its owner.
func TestTableOwnership(t *testing.T) {
	own := Ownership{"shop": {"shop.example.com"}, "blog": {"example.com"}}
	for _, tc := range []struct {
		name   string
		own    Ownership
		hpas   []*autoscalingv2.HorizontalPodAutoscaler
		lookup string // host+path
		want   string // namespace/hpa, "" for no route
		refuse []string
	}{
		{"map: the owner's claim stands, though younger", own,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("attacker", "x", "shop.example.com", 1, "a"), claim("shop", "web", "shop.example.com", 2, "b")},
			"shop.example.com/", "shop/web", []string{"attacker/x shop.example.com: the host ownership map does not allow host shop.example.com to namespace attacker"}},
		{"map: a subdomain of a listed suffix", own,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("blog", "web", "www.example.com/blog", 1, "a")},
			"www.example.com/blog/1", "blog/web", nil},
		{"map: a namespace not listed claims nothing", own,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("other", "web", "other.example.net", 1, "a")},
			"other.example.net/", "", []string{"other/web other.example.net: the host ownership map does not allow host other.example.net to namespace other"}},
		{"map: two namespaces allowed one host: the oldest holds it", Ownership{"a": {"example.com"}, "b": {"example.com"}},
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("b", "web", "x.example.com", 1, "z"), claim("a", "web", "x.example.com/api", 2, "a")},
			"x.example.com/api", "b/web", []string{"a/web x.example.com/api: host x.example.com is routed to namespace b by an older claim"}},
		{"oldest by creationTimestamp", nil,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("aaa", "x", "h.example", 5, "a"), claim("zzz", "y", "h.example", 3, "b")},
			"h.example/", "zzz/y", []string{"aaa/x h.example: host h.example is routed to namespace zzz by an older claim"}},
		{"same second: the smaller UID", nil,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("aaa", "x", "h.example", 3, "uid-2"), claim("zzz", "y", "h.example", 3, "uid-1")},
			"h.example/", "zzz/y", []string{"aaa/x h.example: host h.example is routed to namespace zzz by an older claim"}},
		{"same namespace, same host and prefix: the oldest", nil,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("shop", "b", "h.example/api", 1, "b"), claim("shop", "a", "h.example/api", 2, "a")},
			"h.example/api", "shop/b", []string{"shop/a h.example/api: h.example/api is routed to HPA shop/b by an older claim"}},
		{"same namespace, other prefixes of one host: both routed", nil,
			[]*autoscalingv2.HorizontalPodAutoscaler{claim("shop", "web", "h.example", 1, "a"), claim("shop", "api", "h.example/api", 2, "b")},
			"h.example/api/x", "shop/api", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes := routesOf(t, tc.hpas...)
			// The decision does not depend on the order the informer lists the HPAs in.
			for shuffle := 0; shuffle < 20; shuffle++ {
				rand.Shuffle(len(routes), func(i, j int) { routes[i], routes[j] = routes[j], routes[i] })
				tb, refused := NewTable(routes, tc.own)
				host, path, _ := strings.Cut(tc.lookup, "/")
				r, ok := tb.Lookup(host, "/"+path)
				if got := map[bool]string{true: r.Target.Namespace + "/" + r.Target.HPA}[ok]; got != tc.want {
					t.Fatalf("shuffle %d: Lookup(%s) = %q, want %q", shuffle, tc.lookup, got, tc.want)
				}
				var gotRefused []string
				for _, f := range refused {
					gotRefused = append(gotRefused, f.Route.Target.Namespace+"/"+f.Route.Target.HPA+" "+f.Route.Host+f.Route.PathPrefix+": "+f.Reason)
				}
				if strings.Join(gotRefused, "\n") != strings.Join(tc.refuse, "\n") {
					t.Fatalf("shuffle %d: refused\n%s\nwant\n%s", shuffle, strings.Join(gotRefused, "\n"), strings.Join(tc.refuse, "\n"))
				}
			}
		})
	}
}

func TestWatchOwnershipReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts.yaml")
	// Replaced whole, as the kubelet swaps a mounted ConfigMap.
	write := func(data string) {
		t.Helper()
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	first := []byte("shop: [shop.example.com]\n")
	write(string(first))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Ownership, 4)
	go WatchOwnership(ctx, path, first, 10*time.Millisecond, func(o Ownership) { got <- o })
	// A bad file is refused: the last good map stays (nothing applied); then a good one is applied.
	write("shop: [\"bad host!\"]\n")
	time.Sleep(50 * time.Millisecond)
	write("blog: [blog.example.com]\n")
	select {
	case o := <-got:
		if !o.Allows("blog", "blog.example.com") || o.Allows("shop", "shop.example.com") {
			t.Fatalf("applied %v, want the new map", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the changed file was not applied")
	}
	select {
	case o := <-got:
		t.Fatalf("applied %v more than once", o)
	default:
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct{ in, want, wantErr string }{
		{"", "", ""},
		{"10.0.0.0/8, 192.168.1.7,fd00::/8", "10.0.0.0/8 192.168.1.7/32 fd00::/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{"10.0.0.0/33", "", `"10.0.0.0/33" is not a CIDR`},
		{"ingress", "", `"ingress" is neither a CIDR nor an IP address`},
	} {
		got, err := ParseCIDRs(tc.in)
		if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ParseCIDRs(%q): err %v, want %q", tc.in, err, tc.wantErr)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tc.want {
			t.Errorf("ParseCIDRs(%q) = %v, want %s", tc.in, s, tc.want)
		}
	}
}
