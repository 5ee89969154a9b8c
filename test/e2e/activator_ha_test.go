//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/activator"
)

// activatorProc is cmd/promql-activator run as its own process, with deploy/activator-rbac.yaml's ServiceAccount.
type activatorProc struct {
	url, admin string // http://127.0.0.1:port of the proxy and of /metrics
	cmd        *exec.Cmd
	done       chan struct{}
}

var activatorBin struct {
	once sync.Once
	path string
	err  error
}

// buildActivator builds cmd/promql-activator once per run, and applies its RBAC.
func buildActivator(ctx context.Context, t *testing.T) (bin, kubeconfig string) {
	t.Helper()
	activatorBin.once.Do(func() {
		activatorBin.path = filepath.Join(st.WorkDir(), "promql-activator")
		build := exec.CommandContext(ctx, "go", "build", "-o", activatorBin.path, "./cmd/promql-activator")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			activatorBin.err = fmt.Errorf("build promql-activator: %v\n%s", err, out)
			return
		}
		apply := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), "--kubeconfig", st.Cluster.AdminKubeconfig(),
			"apply", "-f", filepath.Join(root, "deploy/activator-rbac.yaml"))
		if out, err := apply.CombinedOutput(); err != nil {
			activatorBin.err = fmt.Errorf("kubectl apply deploy/activator-rbac.yaml: %v\n%s", err, out)
		}
	})
	if activatorBin.err != nil {
		t.Fatal(activatorBin.err)
	}
	kc, err := st.ServiceAccountKubeconfig(ctx, "custom-metrics", "promql-activator")
	if err != nil {
		t.Fatal(err)
	}
	return activatorBin.path, kc
}

var servingLine = regexp.MustCompile(`"serving" proxy="([^"]+)" admin="([^"]+)"`)

// startActivatorProc runs one replica on loopback ports of its own choosing (read from its log).
func startActivatorProc(ctx context.Context, t *testing.T, id string, args ...string) *activatorProc {
	t.Helper()
	bin, kc := buildActivator(ctx, t)
	return runActivatorProc(ctx, t, id, exec.Command(bin, append([]string{"--kubeconfig=" + kc, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--v=2"}, args...)...))
}

// runActivatorProc starts cmd, a promql-activator command, and waits until it serves (its addresses read from its log).
func runActivatorProc(ctx context.Context, t *testing.T, id string, cmd *exec.Cmd) *activatorProc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &activatorProc{done: make(chan struct{})}
	p.cmd = cmd
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrs <- m[1:]:
				default:
				}
			}
		}
		_, _ = io.Copy(logf, stderr)
	}()
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.kill(); t.Logf("activator %s log: %s", id, logf.Name()) })
	select {
	case a := <-addrs:
		p.url, p.admin = "http://"+a[0], "http://"+a[1]
	case <-p.done:
		t.Fatalf("activator %s exited before serving; log %s", id, logf.Name())
	case <-time.After(60 * time.Second):
		t.Fatalf("activator %s not serving within 60s; log %s", id, logf.Name())
	}
	return p
}

// kill sends SIGKILL to the replica and waits for it.
func (p *activatorProc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// value reads one sample of the replica's /metrics for service (0 when absent).
func (p *activatorProc) value(ctx context.Context, name, service string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+"{") && strings.Contains(l, `service="`+service+`"`) {
			return strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		}
	}
	return 0, sc.Err()
}

// TestE2EActivatorReplicaKill: two promql-activator processes (deploy/activator-rbac.yaml's
// ServiceAccount) in front of one sleeping target whose process boots for 4 s. Ten clients send to
// each; once both replicas hold their 10 (and have called the wake), one replica gets SIGKILL.
// Asserted: every request held by the surviving replica gets the pod's answer (0 failed); every
// client of the killed replica gets a transport error (its connection closed) and no HTTP answer at
// all; and the pod answered exactly the survivor's 10, so nothing the killed replica held was sent.
func TestE2EActivatorReplicaKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const name, host, per = "haweb", "haweb.example.com", 10
	tg, sup := activatorWorkload(ctx, t, name, host, 4*time.Second)
	// An in-process view of the cluster for waitAsleep and the pod's address (it serves no traffic).
	view := startActivator(ctx, t, activator.Options{})
	waitAsleep(t, view, sup, tg)

	a := startActivatorProc(ctx, t, "a")
	b := startActivatorProc(ctx, t, "b")
	type reply struct {
		via  string
		code int
		body string
		err  error
	}
	out := make(chan reply, 2*per)
	client := &http.Client{Timeout: 90 * time.Second}
	for _, p := range []struct {
		id string
		p  *activatorProc
	}{{"a", a}, {"b", b}} {
		for i := 0; i < per; i++ {
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.p.url+"/", nil)
				req.Host = host
				r := reply{via: p.id}
				resp, err := client.Do(req)
				if err != nil {
					r.err = err
				} else {
					bb, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.code, r.body = resp.StatusCode, string(bb)
				}
				out <- r
			}()
		}
	}
	for _, p := range []struct {
		id string
		p  *activatorProc
	}{{"a", a}, {"b", b}} {
		eventually(t, 20*time.Second, "replica "+p.id+" holds its 10 and has woken the target", func() (bool, string) {
			held, err := p.p.value(ctx, "promql_activator_requests_held", name)
			if err != nil {
				return false, err.Error()
			}
			wakes, err := p.p.value(ctx, "promql_activator_wakes_total", name)
			if err != nil {
				return false, err.Error()
			}
			return held == per && wakes > 0, fmt.Sprintf("held %v, wakes %v", held, wakes)
		})
	}
	if addrs, _ := view.cl.Ready(tg); len(addrs) > 0 {
		if _, err := podRequests(ctx, addrs[0]); err == nil {
			t.Fatalf("the pod already serves at %s: the kill would not be during the cold start", addrs[0])
		}
	}
	a.kill()
	t.Logf("replica a killed (SIGKILL) while both held %d requests", per)

	failedB, answersA := 0, 0
	for i := 0; i < 2*per; i++ {
		r := <-out
		switch {
		case r.via == "b" && (r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "hello from "+name+"-")):
			failedB++
			t.Errorf("request held by the surviving replica: %d %q %v", r.code, r.body, r.err)
		case r.via == "a" && r.err == nil:
			answersA++
			t.Errorf("request held by the killed replica got an HTTP answer: %d %q", r.code, r.body)
		case r.via == "a":
			t.Logf("client of the killed replica: %v", r.err)
		}
	}
	addr, answered := podAnswered(ctx, t, view, tg)
	t.Logf("surviving replica: %d of %d failed; killed replica: %d of %d got an HTTP answer; pod %s answered %v", failedB, per, answersA, per, addr, answered)
	if answered != per {
		t.Fatalf("the pod answered %v requests, want exactly the surviving replica's %d", answered, per)
	}
}
