// Package podnet makes a test host for pod addresses. kwok's pods have no
// process and EndpointSlices refuse loopback addresses, so tests that need real
// HTTP to a pod's IP create a network namespace joined to the root namespace by
// a veth pair, make a pod CIDR local inside it and route that CIDR to it from
// the root namespace. A process started inside the namespace (Command) or a
// socket opened there (Listen, Forward) can then serve any address of the CIDR,
// and kube-apiserver, the activator and the tests reach it.
//
// Each Net claims a slot: its namespace name, veth names, link addresses and
// pod CIDR are unique on the machine, so concurrent test runs do not collide.
// Only the Net's own addresses are ever routed; nothing leaves the machine.
// It needs root (CAP_NET_ADMIN) and iproute2's ip.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Slots are numbered 1..MaxSlot; slot N owns pod CIDR 10.251.N.0/24 and link
// addresses 169.254.251.4N+1 (root side) and +2 (namespace side).
const MaxSlot = 62

// Net is a network namespace whose pod CIDR is reachable from the root namespace.
type Net struct {
	Name     string     // network namespace name, pqnet-N
	CIDR     *net.IPNet // the pod CIDR, local inside the namespace
	HostIP   net.IP     // the root side of the veth pair
	InnerIP  net.IP     // the namespace side of the veth pair
	slot     int
	hostVeth string
	closed   bool
}

// New claims a free slot and creates its namespace, veth pair and routes.
func New(ctx context.Context) (*Net, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("podnet: iproute2's ip is required: %w", err)
	}
	for slot := 1; slot <= MaxSlot; slot++ {
		name := fmt.Sprintf("pqnet-%d", slot)
		// `ip netns add` fails when the name exists: that is the claim.
		if err := ip(ctx, "netns", "add", name); err != nil {
			if strings.Contains(err.Error(), "File exists") {
				continue
			}
			return nil, fmt.Errorf("podnet: create namespace %s: %w", name, err)
		}
		n := &Net{
			Name:     name,
			CIDR:     &net.IPNet{IP: net.IPv4(10, 251, byte(slot), 0).To4(), Mask: net.CIDRMask(24, 32)},
			HostIP:   net.IPv4(169, 254, 251, byte(4*slot+1)).To4(),
			InnerIP:  net.IPv4(169, 254, 251, byte(4*slot+2)).To4(),
			slot:     slot,
			hostVeth: fmt.Sprintf("pqv%d", slot),
		}
		if err := n.setUp(ctx); err != nil {
			return nil, errors.Join(err, n.Close())
		}
		return n, nil
	}
	return nil, fmt.Errorf("podnet: all %d slots are taken (stale namespaces? `ip netns list`)", MaxSlot)
}

// setUp creates the veth pair, the addresses and the routes of n.
func (n *Net) setUp(ctx context.Context) error {
	inner := n.hostVeth + "n"
	steps := [][]string{
		{"link", "add", n.hostVeth, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", n.Name},
		{"addr", "add", n.HostIP.String() + "/30", "dev", n.hostVeth},
		{"link", "set", n.hostVeth, "up"},
		{"-n", n.Name, "addr", "add", n.InnerIP.String() + "/30", "dev", inner},
		{"-n", n.Name, "link", "set", inner, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "route", "add", "local", n.CIDR.String(), "dev", "lo"},
		{"-n", n.Name, "route", "add", "default", "via", n.HostIP.String()},
		{"route", "add", n.CIDR.String(), "via", n.InnerIP.String()},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("podnet %s: %w", n.Name, err)
		}
	}
	return nil
}

// Addr returns the i-th address of the pod CIDR (1..254).
func (n *Net) Addr(i int) net.IP {
	return net.IPv4(n.CIDR.IP[0], n.CIDR.IP[1], n.CIDR.IP[2], byte(i)).To4()
}

// Contains reports whether ip is an address of the pod CIDR.
func (n *Net) Contains(ip net.IP) bool { return n.CIDR.Contains(ip) }

// Command returns a command that runs inside the namespace.
func (n *Net) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Listen opens a TCP listener inside the namespace, e.g. on a pod's address.
// The socket stays in the namespace; the caller serves it from any goroutine.
func (n *Net) Listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("podnet %s: listen %s: %w", n.Name, addr, err)
	}
	return l, nil
}

// do runs fn on an OS thread switched into the namespace, then switches back.
// A thread that cannot switch back is never reused (it exits with the goroutine).
func (n *Net) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/var/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return // the locked thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close removes the route, the veth pair and the namespace; a second call does
// nothing. Processes still running inside the namespace keep it alive until
// they exit.
func (n *Net) Close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if n.hostVeth != "" {
		_ = ip(ctx, "route", "del", n.CIDR.String()) // gone with the veth if it is not
		if err := ip(ctx, "link", "del", n.hostVeth); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	if err := ip(ctx, "netns", "del", n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ip runs iproute2's ip with args and returns its output in the error.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
