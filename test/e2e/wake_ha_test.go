//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/wake"
)

// Targets of TestE2EWakeLosesAPIServer.
var haIdle, haPush = queueTarget("haidle"), queueTarget("hapush")

// blackholeProxy forwards TCP to kube-apiserver until blackholed: then it drops every open
// connection and holds new ones without forwarding a byte, as a partition would.
type blackholeProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	holed   chan struct{} // non-nil while blackholed; closed when it ends
	conns   map[net.Conn]struct{}
	stopped bool
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *blackholeProxy) addr() string { return p.ln.Addr().String() }

func (p *blackholeProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *blackholeProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *blackholeProxy) handle(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	holed := p.holed
	p.mu.Unlock()
	if holed != nil {
		<-holed // held, never answered; closed when the partition ends
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// blackhole starts (true) or ends (false) the partition.
func (p *blackholeProxy) blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.holed == nil {
		p.holed = make(chan struct{})
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	if !on && p.holed != nil {
		close(p.holed)
		p.holed = nil
	}
}

func (p *blackholeProxy) close() {
	p.blackhole(false)
	p.mu.Lock()
	p.stopped = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

// wakeGet GETs a path of a replica: status and body.
func wakeGet(w *stack.Wake, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(w.URL + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wakePush POSTs a push to a replica, with a client timeout longer than any server-side bound.
func wakePush(w *stack.Wake, path string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, w.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+w.Token)
	c := http.Client{Timeout: 45 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// actions is how many sleeps and wakes a replica has done, from its /metrics.
func actions(t *testing.T, w *stack.Wake) float64 {
	t.Helper()
	code, body := wakeGet(w, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	n := 0.0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "promql_wake_sleeps_total") || strings.HasPrefix(line, "promql_wake_wakes_total") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += v
		}
	}
	return n
}

// TestE2EWakeLosesAPIServer (fault suite 2): two replicas; the leader reaches kube-apiserver through
// a proxy that the test blackholes for 20 s. A push sent to it during the outage is either applied
// or refused, never answered 200 and lost. Afterwards exactly one replica acts: exactly one takes
// pushes and is Ready, and only it scales targets.
func TestE2EWakeLosesAPIServer(t *testing.T) {
	ctx := context.Background()
	if err := st.CreateWorkload(ctx, haIdle, 1); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWorkload(ctx, haPush, 0); err != nil { // at zero, as if asleep
		t.Fatal(err)
	}
	u, err := url.Parse(st.Cluster.APIServerURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackholeProxy(t, u.Host)
	a, err := st.StartWakeWith(ctx, "wake-ha-a", stack.WakeOptions{APIServer: proxy.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	waitLeader(t, "wake-ha-a")
	b, err := st.StartWake(ctx, "wake-ha-b", wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	byID := map[string]*stack.Wake{"wake-ha-a": a, "wake-ha-b": b}

	idle := queueHPA("haidle", nil) // idle after 10 s
	push := queueHPA("hapush", map[string]string{wake.AnnotationIdleAfter: "10m"})
	for _, h := range []*autoscalingv2.HorizontalPodAutoscaler{idle, push} {
		h.Spec.MinReplicas = ptr.To[int32](1)
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSpecReplicas(t, "haidle", 0, 60*time.Second)
	if na, nb := actions(t, a), actions(t, b); na < 1 || nb != 0 {
		t.Fatalf("before the outage: leader wake-ha-a acted %v times, standby wake-ha-b %v; want ≥1 and 0", na, nb)
	}

	// The outage: 20 s without kube-apiserver for wake-ha-a.
	proxy.blackhole(true)
	began := time.Now()
	type answer struct {
		code int
		body string
		at   time.Duration
	}
	pushed := make(chan answer, 1)
	go func() {
		time.Sleep(2 * time.Second) // wake-ha-a still believes it leads: its Lease is not yet overdue
		code, body := wakePush(a, "/wake/"+ns+"/hpa/hapush")
		pushed <- answer{code, body, time.Since(began)}
	}()
	var unready time.Duration
	for time.Since(began) < 20*time.Second {
		if code, _ := wakeGet(a, "/readyz"); code != http.StatusOK && unready == 0 {
			unready = time.Since(began)
		}
		time.Sleep(250 * time.Millisecond)
	}
	proxy.blackhole(false)
	ended := time.Now()
	during := <-pushed
	t.Logf("push to wake-ha-a %s into the outage: %d %s", during.at.Round(100*time.Millisecond), during.code, during.body)
	t.Logf("wake-ha-a stopped being Ready %s into the outage", unready.Round(100*time.Millisecond))
	switch during.code {
	case http.StatusOK:
		if got := replicas(t, "hapush"); got < 1 {
			t.Errorf("the push during the outage was answered 200 but hapush has %d replicas: lost", got)
		}
	case http.StatusServiceUnavailable:
	default:
		t.Errorf("push during the outage: %d %s; want 200 (applied) or 503 (refused, retryable)", during.code, during.body)
	}
	if unready == 0 {
		t.Error("wake-ha-a stayed Ready through 20 s without kube-apiserver")
	}

	// Afterwards exactly one replica takes pushes, and it is the Lease holder.
	var holder string
	eventually(t, 40*time.Second, "exactly one replica takes pushes", func() (bool, string) {
		holder, err = leaseHolder()
		if err != nil {
			return false, err.Error()
		}
		var ok []string
		for id, w := range byID {
			if code, _ := wakePush(w, "/wake/"+ns+"/hpa/hapush"); code == http.StatusOK {
				ok = append(ok, id)
			}
		}
		return len(ok) == 1 && ok[0] == holder, fmt.Sprintf("holder %q, pushes accepted by %v", holder, ok)
	})
	t.Logf("%s after the outage %s leads", time.Since(ended).Round(100*time.Millisecond), holder)
	if got := replicas(t, "hapush"); got < 1 {
		t.Errorf("hapush has %d replicas after an accepted push", got)
	}
	standby := "wake-ha-a"
	if holder == "wake-ha-a" {
		standby = "wake-ha-b"
	}
	for range 3 {
		for id, w := range byID {
			code, body := wakeGet(w, "/readyz")
			if (code == http.StatusOK) != (id == holder) {
				t.Errorf("%s /readyz: %d %s (leader %s)", id, code, body, holder)
			}
			if hc, hb := wakeGet(w, "/healthz"); hc != http.StatusOK {
				t.Errorf("%s /healthz: %d %s: the election must run on", id, hc, hb)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Only the leader scales: haidle's queue grows, it is woken, by the leader alone.
	before := map[string]float64{"wake-ha-a": actions(t, a), "wake-ha-b": actions(t, b)}
	if err := st.Sim.SetQueue(ns, "haidle", 50); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "haidle woken", func() (bool, string) {
		got := replicas(t, "haidle")
		return got >= 1, fmt.Sprintf("replicas %d", got)
	})
	time.Sleep(2 * time.Second) // a second replica acting would have done so by now (poll 500 ms)
	after := map[string]float64{"wake-ha-a": actions(t, a), "wake-ha-b": actions(t, b)}
	if after[holder] <= before[holder] || after[standby] != before[standby] {
		t.Errorf("after the outage, actions of %s (leader) %v → %v, of %s %v → %v; want only the leader's to grow",
			holder, before[holder], after[holder], standby, before[standby], after[standby])
	}
}
