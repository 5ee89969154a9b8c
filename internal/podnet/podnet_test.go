package podnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func newNet(t *testing.T) *Net {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx)
	if err != nil {
		t.Fatalf("podnet.New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return string(b)
}

func serve(t *testing.T, l net.Listener, body string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s", body, r.Host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

func TestListenServesPodAddressFromRootNamespace(t *testing.T) {
	n := newNet(t)
	pod := n.Addr(7)
	if !n.Contains(pod) || n.Contains(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("Contains: pod %s in %s", pod, n.CIDR)
	}
	l, err := n.Listen(net.JoinHostPort(pod.String(), "8080"))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, "pod")
	want := "pod from " + pod.String() + ":8080"
	if got := get(t, "http://"+pod.String()+":8080/"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// The address is not served in the root namespace itself: binding it there fails.
	if l2, err := net.Listen("tcp", net.JoinHostPort(pod.String(), "8081")); err == nil {
		l2.Close()
		t.Fatalf("pod address %s is bindable in the root namespace; it must live only in %s", pod, n.Name)
	}
}

func TestCommandRunsInsideNamespace(t *testing.T) {
	n := newNet(t)
	out, err := n.Command(context.Background(), "ip", "-o", "route", "show", "table", "local").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route inside: %v: %s", err, out)
	}
	if !strings.Contains(string(out), n.CIDR.String()) {
		t.Fatalf("local routes inside %s lack %s:\n%s", n.Name, n.CIDR, out)
	}
}

func TestForwardRelaysToLoopback(t *testing.T) {
	n := newNet(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, "replica")
	f, err := n.Forward(net.JoinHostPort(n.Addr(9).String(), "443"), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + n.Addr(9).String() + ":443/"
	if got := get(t, url); !strings.HasPrefix(got, "replica from ") {
		t.Fatalf("got %q through the forwarder", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("GET after Close succeeded")
	}
}

func TestSlotsAreDistinctAndCloseRemovesNamespace(t *testing.T) {
	a, b := newNet(t), newNet(t)
	if a.Name == b.Name || a.CIDR.String() == b.CIDR.String() || a.HostIP.Equal(b.HostIP) {
		t.Fatalf("two nets share a slot: %s %s, %s %s", a.Name, a.CIDR, b.Name, b.CIDR)
	}
	name := b.Name
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Fields(line + " x")[0] == name {
			t.Fatalf("namespace %s still listed after Close:\n%s", name, out)
		}
	}
}
