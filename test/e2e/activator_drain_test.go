//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/wake"
)

// sleepingTargets creates, for each name, a Deployment at 0 with its Service and an HPA opted in to
// scale-to-zero, asleep, that routes name.example.com to it (no pod process: see podServers).
func sleepingTargets(ctx context.Context, t *testing.T, names []string) {
	t.Helper()
	for _, name := range names {
		if err := st.CreateWorkload(ctx, queueTarget(name), 0); err != nil {
			t.Fatal(err)
		}
		h := hpa(name, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "activator_e2e_absent"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(1, resource.DecimalSI)},
		}})
		h.Annotations = map[string]string{wake.AnnotationEnabled: "true", activator.AnnotationHosts: name + ".example.com", activator.AnnotationService: name}
		for k, v := range (wake.State{Sleeping: true, SleepingReplicas: 1, IdleSince: time.Now()}).Annotations() {
			if v != "" {
				h.Annotations[k] = v
			}
		}
		if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, name := range names {
			_ = st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, name, metav1.DeleteOptions{})
			_ = st.Kube.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{})
			_ = st.Kube.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
	})
}

// podServers serves, on port 8080 of each pod that match selects, an HTTP server on the pod's IP inside
// the podnet namespace, in this process: cheaper than a Node.js process per pod when there are 50. It reads
// the body and answers "hello from <pod>".
func podServers(ctx context.Context, t *testing.T, match func(*corev1.Pod) bool) {
	t.Helper()
	var mu sync.Mutex
	servers := map[string]*http.Server{}
	serve := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || !match(p) || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if servers[p.Status.PodIP] != nil {
			return
		}
		ln, err := pnet.Listen(net.JoinHostPort(p.Status.PodIP, "8080"))
		if err != nil {
			t.Errorf("pod %s: %v", p.Name, err)
			return
		}
		name := p.Name
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "hello from %s", name)
		})}
		servers[p.Status.PodIP] = srv
		go func() { _ = srv.Serve(ln) }()
	}
	f := informers.NewSharedInformerFactoryWithOptions(st.Kube, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: serve, UpdateFunc: func(_, obj any) { serve(obj) }})
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() {
		close(stop)
		mu.Lock()
		defer mu.Unlock()
		for _, s := range servers {
			_ = s.Close()
		}
	})
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
}

// stalledPost is a client that sends the headers of a POST of size bytes to host and all of its body but
// the last byte (declared with Content-Length, or chunked), then stops sending, and waits up to wait for
// the answer.
func stalledPost(addr, host string, size int, chunked bool, wait time.Duration) activatorReply {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return activatorReply{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	go func() {
		bw := bufio.NewWriterSize(c, 64<<10)
		if chunked {
			fmt.Fprintf(bw, "POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", host)
		} else {
			fmt.Fprintf(bw, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", host, size)
		}
		block := []byte(strings.Repeat("x", 32<<10))
		for left := size - 1; left > 0; {
			n := min(left, len(block))
			if chunked {
				fmt.Fprintf(bw, "%x\r\n", n)
			}
			if _, err := bw.Write(block[:n]); err != nil {
				return // refused: the activator closed the connection
			}
			if chunked {
				bw.WriteString("\r\n")
			}
			left -= n
		}
		_ = bw.Flush()
		// ... and the last byte never comes.
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return activatorReply{err: err}
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return activatorReply{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
}

// TestE2EActivatorMemoryBound: the promql-activator binary, its own process, in front of 50 sleeping
// targets whose pods get real podnet addresses. At once: 50 clients each send one target 8 MiB less a byte
// of body and stall, and 1,000 GETs go to the 50 targets (20 each). Asserted: the activator's resident
// memory (VmHWM, and VmRSS sampled every 50 ms) stays under its RSS at start + --max-held-bytes-total +
// a 96 MiB margin (1,050 connections with their goroutines and buffers, and the Go heap's headroom); every
// GET gets the pod's answer; every stalled POST gets 503 with Retry-After, at once when it does not fit,
// else at --body-read-timeout; no client reaches its own deadline (none hangs).
func TestE2EActivatorMemoryBound(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		targets   = 50
		perTarget = 20
		bodySize  = 8 << 20
		budget    = 64 << 20
		margin    = 96 << 20
		deadline  = 90 * time.Second // every client's own
	)
	names := make([]string, targets)
	for i := range names {
		names[i] = fmt.Sprintf("mem%02d", i)
	}
	sleepingTargets(ctx, t, names)
	podServers(ctx, t, func(p *corev1.Pod) bool { return strings.HasPrefix(p.Labels["app"], "mem") })
	p := startActivatorProc(ctx, t, "mem", "--v=0", "--max-wait=60s", "--body-read-timeout=10s", "--retry-after=2s",
		fmt.Sprintf("--max-held-bytes=%d", bodySize), fmt.Sprintf("--max-held-bytes-total=%d", budget),
		"--kube-api-qps=200", "--kube-api-burst=400")
	pid := p.cmd.Process.Pid
	time.Sleep(time.Second)
	startKiB, err := localcluster.MemoryKiB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	var peakKiB atomic.Int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if kb, err := localcluster.MemoryKiB(pid, "VmRSS"); err == nil && kb > peakKiB.Load() {
				peakKiB.Store(kb)
			}
			select {
			case <-sampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	addr := strings.TrimPrefix(p.url, "http://")

	var wg sync.WaitGroup
	stalled := make([]activatorReply, targets)
	for i := range stalled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stalled[i] = stalledPost(addr, names[i]+".example.com", bodySize, i%2 == 1, deadline)
		}()
	}
	gets := make([]activatorReply, targets*perTarget)
	client := &http.Client{Timeout: deadline, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range gets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/", nil)
			req.Host = names[i%targets] + ".example.com"
			resp, err := client.Do(req)
			if err != nil {
				gets[i] = activatorReply{i: i, err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			gets[i] = activatorReply{i: i, code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
		}()
	}
	wg.Wait()
	close(sampling)
	<-sampled
	hwmKiB, err := localcluster.MemoryKiB(pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}

	ok200, bad := 0, 0
	for _, r := range gets {
		host := names[r.i%targets]
		if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "hello from "+host+"-") {
			if bad++; bad <= 5 {
				t.Errorf("GET %s: %d %q %v; want the pod's answer", host, r.code, r.body, r.err)
			}
			continue
		}
		ok200++
	}
	full, timedOut := 0, 0
	for i, r := range stalled {
		switch {
		case r.err != nil:
			t.Errorf("stalled POST %s: %v (no answer within its %s deadline)", names[i], r.err, deadline)
		case r.code != http.StatusServiceUnavailable || r.retryAfter != "2":
			t.Errorf("stalled POST %s: %d Retry-After %q %q; want 503 with Retry-After 2", names[i], r.code, r.retryAfter, r.body)
		case strings.Contains(r.body, "queue is full"):
			full++
		case strings.Contains(r.body, "did not arrive within 10s"):
			timedOut++
		default:
			t.Errorf("stalled POST %s: 503 %q; want queue full or body timeout", names[i], r.body)
		}
	}
	bound := startKiB + (budget+margin)>>10
	t.Logf("RESULT | activator RSS at start | %.1f MiB |", float64(startKiB)/1024)
	t.Logf("RESULT | peak RSS (VmHWM / VmRSS sampled) | %.1f / %.1f MiB |", float64(hwmKiB)/1024, float64(peakKiB.Load())/1024)
	t.Logf("RESULT | bound: start + budget %d MiB + margin %d MiB | %.1f MiB |", budget>>20, margin>>20, float64(bound)/1024)
	t.Logf("RESULT | GETs: 200 / other | %d / %d |", ok200, bad)
	t.Logf("RESULT | stalled 8 MiB POSTs: 503 at once (full) / 503 at body-read-timeout / other | %d / %d / %d |", full, timedOut, targets-full-timedOut)
	t.Logf("RESULT | test took | %s |", time.Since(began).Round(time.Second))
	if hwmKiB > bound || peakKiB.Load() > bound {
		t.Errorf("activator peak RSS %.1f MiB over the bound %.1f MiB (start %.1f + budget %d + margin %d)",
			float64(max(hwmKiB, peakKiB.Load()))/1024, float64(bound)/1024, float64(startKiB)/1024, budget>>20, margin>>20)
	}
	// A body held until its read deadline had its 8 MiB (less a byte) reserved: at most budget/bodySize
	// of them fit; the others were refused as soon as the budget had no room for the rest of their body.
	if timedOut > budget/bodySize {
		t.Errorf("%d stalled 8 MiB bodies were held until their deadline; at most %d fit the budget", timedOut, budget/bodySize)
	}
}

// endpointPicker does what kube-proxy does for a client: it watches the EndpointSlices of a Service and
// round-robins over their Ready endpoints.
type endpointPicker struct {
	mu    sync.Mutex
	ready []string // ip:port
	next  int
}

func watchEndpoints(ctx context.Context, t *testing.T, service string) *endpointPicker {
	t.Helper()
	p := &endpointPicker{}
	f := informers.NewSharedInformerFactoryWithOptions(st.Kube, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=" + service }))
	inf := f.Discovery().V1().EndpointSlices().Informer()
	update := func(any) {
		var ready []string
		for _, obj := range inf.GetStore().List() {
			s := obj.(*discoveryv1.EndpointSlice)
			if len(s.Ports) == 0 || s.Ports[0].Port == nil {
				continue
			}
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, true) && len(e.Addresses) > 0 {
					ready = append(ready, net.JoinHostPort(e.Addresses[0], fmt.Sprint(*s.Ports[0].Port)))
				}
			}
		}
		p.mu.Lock()
		p.ready = ready
		p.mu.Unlock()
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: update, UpdateFunc: func(_, o any) { update(o) }, DeleteFunc: update})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	f.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("EndpointSlice informer did not sync")
	}
	return p
}

// pick returns the next Ready endpoint other than avoid ("" if none).
func (p *endpointPicker) pick(avoid string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.ready {
		p.next++
		if e := p.ready[p.next%len(p.ready)]; e != avoid {
			return e
		}
	}
	return ""
}

// pickedGet sends a GET for host to an endpoint the picker chooses. Like a careful client it tries another
// endpoint only when the request was never written to a connection (a refused dial), so nothing is sent twice.
func pickedGet(ctx context.Context, c *http.Client, p *endpointPicker, host string) (code int, body string, retries int, err error) {
	avoid := ""
	for {
		ep := p.pick(avoid)
		if ep == "" {
			return 0, "", retries, errors.New("no Ready endpoint")
		}
		var wrote atomic.Bool
		trace := &httptrace.ClientTrace{
			GetConn:      func(string) { wrote.Store(false) }, // each attempt of the transport starts unsent
			WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
		}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, "http://"+ep+"/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			if !wrote.Load() && ctx.Err() == nil {
				avoid = ep
				retries++
				continue
			}
			return 0, "", retries, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), retries, nil
	}
}

// podnetKubeconfig rewrites kc for a process inside the podnet namespace: kube-apiserver, on the host's
// loopback, is reached through a forwarder on a pod address (its certificate still checked for its own name).
func podnetKubeconfig(t *testing.T, kc string, fwdIP net.IP) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			t.Fatal(err)
		}
		f, err := pnet.Forward(net.JoinHostPort(fwdIP.String(), u.Port()), u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		c.TLSServerName = u.Hostname()
		u.Host = net.JoinHostPort(fwdIP.String(), u.Port())
		c.Server = u.String()
	}
	out := filepath.Join(t.TempDir(), "podnet.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestE2EActivatorRollout: two promql-activator processes, each on a pod address of the podnet (inside the
// namespace, as pods), behind a Service whose EndpointSlice lists both; clients pick endpoints from the
// EndpointSlice the way kube-proxy does (a watch, round-robin over Ready endpoints). Replica a holds 10
// requests of a target that boots for 4 s; steady traffic to an awake target flows through both. Then, at
// the same moment, a's endpoint is marked not Ready and terminating in the slice and a gets SIGTERM (as a
// rolling update does). Asserted: a's /readyz fails at once; 0 requests fail (a client retries on the other
// replica only a request that was never written); the 10 requests a held get the pod's answer; a exits 0
// once drained.
func TestE2EActivatorRollout(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const warm, cold, svc, held = "rollwarm", "rollcold", "activator-rollout", 10
	activatorWorkload(ctx, t, warm, warm+".example.com", 0)
	activatorWorkload(ctx, t, cold, cold+".example.com", 4*time.Second)

	bin, kc := buildActivator(ctx, t)
	kc = podnetKubeconfig(t, kc, pnet.Addr(254))
	start := func(id string, ip net.IP) *activatorProc {
		return runActivatorProc(ctx, t, id, pnet.Command(context.Background(), bin, "--kubeconfig="+kc,
			"--listen="+ip.String()+":8080", "--admin-listen="+ip.String()+":9090", "--v=2", "--shutdown-delay=2s", "--max-wait=60s"))
	}
	ipA, ipB := pnet.Addr(252), pnet.Addr(253)
	a, b := start("a", ipA), start("b", ipB)

	if _, err := st.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	endpoint := func(ip net.IP, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{
			Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(!ready)}}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "e2e.promql-adapter.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint(ipA, true), endpoint(ipB, true)},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	slice, err := st.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	picker := watchEndpoints(ctx, t, svc)
	client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	eventually(t, 60*time.Second, warm+" awake through the picked endpoints", func() (bool, string) {
		code, body, _, err := pickedGet(ctx, client, picker, warm+".example.com")
		return code == http.StatusOK, fmt.Sprintf("%d %q %v", code, body, err)
	})

	// Replica a holds requests of the sleeping target.
	heldOut := make(chan activatorReply, held)
	for i := 0; i < held; i++ {
		sendHeld(ctx, a.url, cold+".example.com", i, heldOut)
	}
	eventually(t, 20*time.Second, "replica a holds the 10", func() (bool, string) {
		v, err := a.value(ctx, "promql_activator_requests_held", cold)
		return v == held, fmt.Sprintf("held %v %v", v, err)
	})

	// Steady traffic through the picked endpoints.
	var total, failed, retried atomic.Int64
	stopTraffic := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopTraffic:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				code, body, n, err := pickedGet(rctx, client, picker, warm+".example.com")
				cancel()
				total.Add(1)
				retried.Add(int64(n))
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "hello from "+warm+"-") {
					if failed.Add(1) <= 5 {
						t.Errorf("request during the rollout: %d %q %v", code, body, err)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	before := total.Load()

	// The rollout: a's endpoint leaves the slice's Ready set and a gets SIGTERM, together.
	slice.Endpoints = []discoveryv1.Endpoint{endpoint(ipA, false), endpoint(ipB, true)}
	if _, err := st.Kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "replica a not ready", func() (bool, string) {
		resp, err := http.Get(a.admin + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, resp.Status
	})
	notReadyAfter := time.Since(termAt)

	for i := 0; i < held; i++ {
		r := <-heldOut
		if r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "hello from "+cold+"-") {
			t.Errorf("request held by the terminating replica: %d %q %v; want the pod's answer", r.code, r.body, r.err)
		}
	}
	heldDone := time.Since(termAt)
	select {
	case <-a.done:
	case <-time.After(90 * time.Second):
		t.Fatal("replica a did not exit within 90s of SIGTERM")
	}
	exited := time.Since(termAt)
	time.Sleep(time.Second) // traffic goes on after a is gone
	close(stopTraffic)
	wg.Wait()
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("replica a exited %d after SIGTERM, want 0", code)
	}
	if v, err := b.value(ctx, "promql_activator_requests_total", warm); err != nil || v == 0 {
		t.Errorf("replica b answered %v requests of %s (%v), want some", v, warm, err)
	}
	t.Logf("RESULT | requests during the rollout (before SIGTERM) | %d (%d) |", total.Load(), before)
	t.Logf("RESULT | failed / retried on the other replica (never written) | %d / %d |", failed.Load(), retried.Load())
	t.Logf("RESULT | a: /readyz failing after SIGTERM / held 10 answered / exited | %s / %s / %s |",
		notReadyAfter.Round(time.Millisecond), heldDone.Round(time.Millisecond), exited.Round(time.Millisecond))
	t.Logf("RESULT | test took | %s |", time.Since(began).Round(time.Second))
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the rollout", failed.Load(), total.Load())
	}
}
