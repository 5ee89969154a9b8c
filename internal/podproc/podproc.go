// Package podproc gives kwok's pods a process: it watches the pods of a
// namespace and, for each one that has an IP, starts a command inside a
// podnet namespace bound to that IP (the pod's "container"), and stops it when
// the pod goes away. It stands in for the kubelet in e2e tests that need real
// HTTP to pod addresses. A pod annotated localcluster.AnnotationReadyWhenListening
// (which kwok starts not Ready) is marked Ready once its process accepts
// connections on the annotated port, as a TCP readiness probe would.
package podproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
)

// Options configure a Supervisor.
type Options struct {
	Namespace string
	Selector  labels.Selector // pods to run; nil: all of the namespace
	// Command builds the process of one pod; it must run inside Net (Net.Command) and serve pod's IP.
	Command func(ctx context.Context, pod *corev1.Pod) *exec.Cmd
	LogDir  string // each process's output goes to LogDir/<pod>.log; "" discards it
}

// Supervisor runs one process per pod with an IP.
type Supervisor struct {
	o     Options
	kube  kubernetes.Interface
	mu    sync.Mutex
	procs map[string]*proc // by pod UID
	wg    sync.WaitGroup
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	name string
}

// Start watches the namespace's pods until ctx ends; Stop ends every process.
func Start(ctx context.Context, kube kubernetes.Interface, o Options) (*Supervisor, error) {
	if o.Selector == nil {
		o.Selector = labels.Everything()
	}
	s := &Supervisor{o: o, kube: kube, procs: map[string]*proc{}}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(o.Namespace))
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.sync(ctx, obj) },
		UpdateFunc: func(_, obj any) { s.sync(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				s.stop(string(p.UID))
			}
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("podproc: pod cache did not sync")
	}
	return s, nil
}

func (s *Supervisor) sync(ctx context.Context, obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || !s.o.Selector.Matches(labels.Set(p.Labels)) {
		return
	}
	uid := string(p.UID)
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		s.stop(uid)
		return
	}
	if p.Status.PodIP == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, running := s.procs[uid]; running {
		return
	}
	cmd := s.o.Command(ctx, p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.o.LogDir != "" {
		if f, err := os.Create(filepath.Join(s.o.LogDir, p.Name+".log")); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "podproc: start %s/%s: %v\n", p.Namespace, p.Name, err)
		return
	}
	pr := &proc{cmd: cmd, done: make(chan struct{}), name: p.Name}
	s.procs[uid] = pr
	if port := p.Annotations[localcluster.AnnotationReadyWhenListening]; port != "" && !podReady(p) {
		go s.readyWhenListening(ctx, p, port, pr.done)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = cmd.Wait()
		if f, ok := cmd.Stdout.(*os.File); ok {
			f.Close()
		}
		close(pr.done)
	}()
}

// stop ends the process of a pod: SIGTERM to its process group, SIGKILL after 5s.
func (s *Supervisor) stop(uid string) {
	s.mu.Lock()
	pr := s.procs[uid]
	delete(s.procs, uid)
	s.mu.Unlock()
	if pr == nil {
		return
	}
	pgid := pr.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-pr.done
	}
}

// readyWhenListening probes the pod's address every 20 ms until its process accepts a
// connection, then sets the pod's Ready and ContainersReady conditions, as a kubelet would.
func (s *Supervisor) readyWhenListening(ctx context.Context, p *corev1.Pod, port string, done <-chan struct{}) {
	addr := net.JoinHostPort(p.Status.PodIP, port)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for _, typ := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
			setCondition(&cur.Status, typ, now)
		}
		for i := range cur.Status.ContainerStatuses {
			cur.Status.ContainerStatuses[i].Ready = true
		}
		_, err = s.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "podproc: mark %s/%s Ready: %v\n", p.Namespace, p.Name, err)
	}
}

func setCondition(st *corev1.PodStatus, typ corev1.PodConditionType, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			if st.Conditions[i].Status != corev1.ConditionTrue {
				st.Conditions[i].Status, st.Conditions[i].LastTransitionTime = corev1.ConditionTrue, now
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Running returns the names of the pods whose process runs.
func (s *Supervisor) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.procs {
		out = append(out, p.name)
	}
	return out
}

// Stop ends every process and waits for them.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	var uids []string
	for uid := range s.procs {
		uids = append(uids, uid)
	}
	s.mu.Unlock()
	for _, uid := range uids {
		s.stop(uid)
	}
	s.wg.Wait()
}

// NodeApp returns a Command that runs hack/nodeapp's server.js inside n for each pod,
// bound to the pod's IP and port, with the given boot (readiness) delay and busy time per request.
func NodeApp(n *podnet.Net, appDir string, port int, boot, busy time.Duration) func(ctx context.Context, pod *corev1.Pod) *exec.Cmd {
	return func(ctx context.Context, pod *corev1.Pod) *exec.Cmd {
		cmd := n.Command(context.WithoutCancel(ctx), "node", filepath.Join(appDir, "server.js"))
		cmd.Env = append(os.Environ(),
			"HOST="+pod.Status.PodIP, fmt.Sprintf("PORT=%d", port), "NAME="+pod.Name,
			fmt.Sprintf("BOOT_MS=%d", boot.Milliseconds()), fmt.Sprintf("BUSY_MS=%d", busy.Milliseconds()))
		return cmd
	}
}

// NpmCI installs the node app's dependencies from its lockfile, once: node_modules is kept when
// package-lock.json has not changed since.
func NpmCI(ctx context.Context, appDir string) error {
	lock := filepath.Join(appDir, "package-lock.json")
	stamp := filepath.Join(appDir, "node_modules", ".package-lock.json")
	if li, err := os.Stat(lock); err == nil {
		if si, err := os.Stat(stamp); err == nil && !si.ModTime().Before(li.ModTime()) {
			return nil
		}
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = appDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", appDir, err, out)
	}
	return nil
}
