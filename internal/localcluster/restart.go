package localcluster

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Restart stops one component (SIGTERM, then SIGKILL after 10 s) and starts it again with
// the same flags, appending to its log; for kube-apiserver it waits until /readyz answers
// again. State lives in etcd, so objects survive a kube-apiserver restart. It returns how
// long the component was down: from the stop to its readiness (or its start, for others).
func (c *Cluster) Restart(ctx context.Context, component string, timeout time.Duration) (time.Duration, error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return 0, fmt.Errorf("localcluster: restart %s: the cluster is stopped", component)
	}
	idx := -1
	for i, p := range c.procs {
		if p.name == component {
			idx = i
		}
	}
	if idx < 0 {
		c.mu.Unlock()
		return 0, fmt.Errorf("localcluster: restart: no component %q", component)
	}
	old := c.procs[idx]
	c.mu.Unlock()

	begin := time.Now()
	if err := old.stop(stopTimeout); err != nil {
		select {
		case <-old.done: // gone, if not gracefully (kube-apiserver may outwait SIGTERM): restart all the same
			c.logf("localcluster: restart %s: %v", component, err)
		default:
			return 0, fmt.Errorf("localcluster: restart %s: %w", component, err)
		}
	}
	p, err := launchProcess(old.name, old.bin, old.args, old.env, old.dir, old.logPath, os.O_APPEND)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.procs[idx] = p
	c.mu.Unlock()
	c.logf("localcluster: restarted %s (pid %d)", component, p.pid())
	if component != ComponentAPIServer {
		return time.Since(begin), nil
	}
	client, err := kubernetes.NewForConfig(c.admin)
	if err != nil {
		return 0, fmt.Errorf("admin client: %w", err)
	}
	err = poll(ctx, timeout, p, "kube-apiserver /readyz after restart", func(ctx context.Context) (bool, error) {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
	if err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}
