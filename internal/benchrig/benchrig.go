// Package benchrig holds what the benchmark rigs on the local control plane share: clients to the adapter
// (direct and through kube-apiserver), GETs, a process's CPU and memory, and percentiles.
package benchrig

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// Clients returns an HTTP client to the adapter at adapterURL (direct) and one to kube-apiserver (via,
// at cfg.Host), both with cfg's credentials and a one-minute timeout.
func Clients(cfg *rest.Config, adapterURL string) (direct, via *http.Client, err error) {
	if via, err = rest.HTTPClientFor(cfg); err != nil {
		return nil, nil, fmt.Errorf("client to kube-apiserver: %w", err)
	}
	dcfg := rest.CopyConfig(cfg)
	dcfg.Host = adapterURL
	dcfg.TLSClientConfig.ServerName = "localhost"
	if direct, err = rest.HTTPClientFor(dcfg); err != nil {
		return nil, nil, fmt.Errorf("client to the adapter: %w", err)
	}
	direct.Timeout, via.Timeout = time.Minute, time.Minute
	return direct, via, nil
}

// Get fetches base+path and returns its body; a status other than 200 is an error carrying the body.
func Get(c *http.Client, base, path string) ([]byte, error) {
	resp, err := c.Get(base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, nil
}

// CPUSeconds is the user and system CPU time process pid has used, from /proc/<pid>/stat.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return (ut + st) / 100, nil
}

// MiB formats a /proc/<pid>/status memory field (VmRSS, VmHWM, ...) in MiB, "?" when it cannot be read.
func MiB(pid int, field string) string {
	kb, err := localcluster.MemoryKiB(pid, field)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

// Loadavg is the machine's 1, 5 and 15 minute load averages, "?" when unknown.
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Percentile is the p-th percentile (nearest rank) of d; d must not be empty.
func Percentile(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*p+99)/100-1]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
