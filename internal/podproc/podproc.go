// Package podproc gives kwok's pods a process: it watches the pods of a
// namespace and, for each one that has an IP, starts a command inside a
// podnet namespace bound to that IP (the pod's "container"), and stops it when
// the pod goes away. It stands in for the kubelet in e2e tests that need real
// HTTP to pod addresses.
package podproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

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
	s := &Supervisor{o: o, procs: map[string]*proc{}}
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
