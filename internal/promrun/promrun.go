// Package promrun starts a real Prometheus server as a child process for
// tests: it writes a prometheus.yml for the given scrape targets, starts the
// binary on a free 127.0.0.1 port, waits until it is ready and offers a few
// helpers (waiting for series, reloading, stopping).
//
// The binary comes from Debian's `prometheus` package (hack/install-deps.sh,
// `make deps`). A missing binary is an error, never a skip.
package promrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

const (
	// EnvBinary is the environment variable naming the Prometheus binary to use.
	EnvBinary = "PROMETHEUS_BIN"

	defaultBinaryPath     = "/usr/bin/prometheus"
	defaultScrapeInterval = time.Second
	readyPollInterval     = 100 * time.Millisecond
	readyTimeout          = 30 * time.Second
	stopTimeout           = 10 * time.Second
	portAttempts          = 3
	logTailBytes          = 4096
)

// Options configures the Prometheus server started by Start.
type Options struct {
	// Binary is the prometheus executable; empty means $PROMETHEUS_BIN, then PATH, then /usr/bin/prometheus.
	Binary string
	// WorkDir holds prometheus.yml, prometheus.log and data/; empty means a temporary directory removed by Stop.
	WorkDir string
	// ScrapeInterval is the global scrape, scrape-timeout and rule evaluation interval; zero means 1s.
	ScrapeInterval time.Duration
	// Targets are the scrape targets; each distinct Job becomes one scrape config with honor_labels: true.
	Targets []Target
	// RuleFiles are rule file paths; relative paths are resolved against the current directory.
	RuleFiles []string
	// ExtraArgs are appended to the prometheus command line.
	ExtraArgs []string
	// AlertmanagerURL, when set (e.g. http://127.0.0.1:9093), is configured as the alerting target.
	AlertmanagerURL string
	// Web, when set, secures Prometheus's HTTP endpoint (--web.config.file); Prometheus only.
	Web *Web
}

// Web is Prometheus's own TLS and basic authentication: every request, the harness's included,
// must verify the certificate against CAFile and send the user's password.
type Web struct {
	CertFile, KeyFile, CAFile string // serving certificate and key, and the CA that signed it
	User, Password            string // the one basic-auth user; Prometheus keeps a bcrypt hash
}

// Target is one static scrape target.
type Target struct {
	// Job is the job name (and job label); empty means "job<index>".
	Job string
	// Address is the host:port to scrape.
	Address string
	// Labels are extra target labels added to every scraped series.
	Labels map[string]string
	// MetricsPath is the HTTP path to scrape; empty means /metrics.
	MetricsPath string
}

// Server is a running Prometheus child process.
type Server struct {
	url        string
	scheme     string // http, or https with Options.Web
	workDir    string
	tempDir    bool
	configPath string
	logPath    string
	client     *http.Client
	api        v1.API

	bin     string                     // for Restart
	args    func(addr string) []string // for Restart
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // the process's exit error; read only after done is closed

	stopOnce sync.Once
	stopErr  error
}

// FindBinary resolves the Prometheus binary as Start does, failing with a "run make deps" hint.
func FindBinary(binary string) (string, error) {
	if binary == "" {
		binary = os.Getenv(EnvBinary)
	}
	if binary != "" {
		p, err := exec.LookPath(binary)
		if err != nil {
			return "", fmt.Errorf("prometheus binary %q not usable (run `make deps` or hack/install-deps.sh to install Prometheus): %w", binary, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(defaultBinaryPath); err != nil {
		return "", fmt.Errorf("prometheus binary not found in $%s, on PATH or at %s: run `make deps` (hack/install-deps.sh) to install it: %w", EnvBinary, defaultBinaryPath, err)
	}
	return defaultBinaryPath, nil
}

// lookBinary resolves a server binary: explicit, else $env, else the Debian package's command.
func lookBinary(explicit, env, debianCommand string) (string, error) {
	bin := explicit
	if bin == "" {
		bin = os.Getenv(env)
	}
	if bin == "" {
		bin = debianCommand
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%s binary: %w (run `make deps`, which installs Debian's %s)", debianCommand, err, debianCommand)
	}
	return p, nil
}

// Version returns the version reported by `binary --version` (e.g. "2.42.0+ds"); empty binary is resolved as in Start.
func Version(binary string) (string, error) {
	bin, err := FindBinary(binary)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("run %s --version: %w (output: %q)", bin, err, out)
	}
	v, ok := parseVersion(string(out))
	if !ok {
		return "", fmt.Errorf("parse %s --version output %q: no \"version\" field", bin, out)
	}
	return v, nil
}

// parseVersion extracts X from a first line like "prometheus, version X (branch: ...)".
func parseVersion(out string) (string, bool) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	_, rest, ok := strings.Cut(line, "version ")
	if !ok {
		return "", false
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", false
	}
	return fields[0], true
}

// Start writes the configuration, starts Prometheus and waits (≤30s, and bounded by ctx) until /-/ready answers 200.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	rules := make([]string, len(opts.RuleFiles))
	for i, f := range opts.RuleFiles {
		if rules[i], err = filepath.Abs(f); err != nil {
			return nil, fmt.Errorf("resolve rule file %q: %w", f, err)
		}
	}
	opts.RuleFiles = rules

	s, abandon, err := newServer(opts.WorkDir, "promrun-", "prometheus.log")
	if err != nil {
		return nil, err
	}
	if s.configPath, err = writeConfig(s.workDir, opts); err != nil {
		abandon()
		return nil, fmt.Errorf("prometheus config: %w", err)
	}

	extra := opts.ExtraArgs
	if opts.Web != nil {
		webConfig, err := s.secure(*opts.Web)
		if err != nil {
			abandon()
			return nil, err
		}
		extra = append([]string{"--web.config.file=" + webConfig}, extra...)
	}
	args := func(addr string) []string {
		return append([]string{
			"--config.file=" + s.configPath,
			"--storage.tsdb.path=" + filepath.Join(s.workDir, "data"),
			"--web.listen-address=" + addr,
			"--web.enable-lifecycle",
			"--web.enable-admin-api",
		}, extra...)
	}
	if err := s.start(ctx, bin, args, abandon); err != nil {
		return nil, err
	}
	return s, nil
}

// secure writes web.yml for w and switches the harness's own client to HTTPS with basic auth.
func (s *Server) secure(w Web) (string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(w.Password), bcrypt.MinCost)
	if err != nil {
		return "", fmt.Errorf("hash the basic-auth password: %w", err)
	}
	web := map[string]any{
		"tls_server_config": map[string]string{"cert_file": w.CertFile, "key_file": w.KeyFile},
		"basic_auth_users":  map[string]string{w.User: string(hash)},
	}
	data, err := yaml.Marshal(web)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.workDir, "web.yml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	rt, err := config.NewRoundTripperFromConfig(config.HTTPClientConfig{
		TLSConfig: config.TLSConfig{CAFile: w.CAFile},
		BasicAuth: &config.BasicAuth{Username: w.User, Password: config.Secret(w.Password)},
	}, "promrun")
	if err != nil {
		return "", fmt.Errorf("client for the secured prometheus: %w", err)
	}
	s.scheme = "https"
	s.client = &http.Client{Timeout: s.client.Timeout, Transport: rt}
	return path, nil
}

// newServer prepares a Server's work dir (a temporary one, removed by Stop, when workDir is
// empty) and opens its log file there. abandon undoes both after a failed start.
func newServer(workDir, tempPrefix, logName string) (s *Server, abandon func(), err error) {
	s = &Server{scheme: "http", client: &http.Client{Timeout: 5 * time.Second}}
	if workDir == "" {
		if s.workDir, err = os.MkdirTemp("", tempPrefix); err != nil {
			return nil, nil, fmt.Errorf("create work dir: %w", err)
		}
		s.tempDir = true
	} else if s.workDir, err = filepath.Abs(workDir); err != nil {
		return nil, nil, fmt.Errorf("resolve work dir %q: %w", workDir, err)
	} else if err := os.MkdirAll(s.workDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create work dir: %w", err)
	}
	removeTemp := func() {
		if s.tempDir {
			_ = os.RemoveAll(s.workDir)
		}
	}
	s.logPath = filepath.Join(s.workDir, logName)
	if s.logFile, err = os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644); err != nil {
		removeTemp()
		return nil, nil, fmt.Errorf("open %s: %w", logName, err)
	}
	return s, func() { _ = s.logFile.Close(); removeTemp() }, nil
}

// start launches the process, retrying on a port clash, and abandons the server on failure.
func (s *Server) start(ctx context.Context, bin string, args func(addr string) []string, abandon func()) error {
	// The free port is found by binding and releasing it, so another process
	// can grab it before the server does: retry with a new port in that case.
	for attempt := 1; ; attempt++ {
		err := s.launch(ctx, bin, args)
		if err == nil {
			return nil
		}
		s.kill()
		if attempt >= portAttempts || !strings.Contains(s.logTail(), "address already in use") || ctx.Err() != nil {
			abandon()
			return err
		}
	}
}

// launch starts one process on a fresh port and waits until it is ready.
func (s *Server) launch(ctx context.Context, bin string, args func(addr string) []string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	return s.launchAt(ctx, bin, args, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// launchAt starts one process listening on addr and waits until it is ready.
func (s *Server) launchAt(ctx context.Context, bin string, args func(addr string) []string, addr string) error {
	s.bin, s.args = bin, args
	cmd := exec.Command(bin, args(addr)...)
	cmd.Dir = s.workDir
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	// Own process group so Stop can signal it as a whole; Pdeathsig kills it
	// if the test binary dies without running Stop (e.g. go test -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	s.waitErr = nil
	go func(done chan struct{}) {
		s.waitErr = cmd.Wait()
		close(done)
	}(s.done)

	s.url = s.scheme + "://" + addr
	c, err := api.NewClient(api.Config{Address: s.url, Client: s.client})
	if err != nil {
		return fmt.Errorf("prometheus API client for %s: %w", s.url, err)
	}
	s.api = v1.NewAPI(c)
	return s.waitReady(ctx)
}

// waitReady polls /-/ready every 100ms until it answers 200, the process exits, 30s pass or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/-/ready", nil)
		if err != nil {
			return fmt.Errorf("build readiness request: %w", err)
		}
		resp, err := s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /-/ready: status %s", resp.Status)
		}
		lastErr = err
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited before becoming ready (%v); log tail:\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("prometheus at %s not ready: %w (last error: %v); log tail:\n%s", s.url, ctx.Err(), lastErr, s.logTail())
		case <-tick.C:
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("release free port: %w", err)
	}
	return port, nil
}

// logTail returns the last few KiB of prometheus.log.
func (s *Server) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.logPath, err)
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}

// URL returns the base URL of the server, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// API returns a client_golang v1 API client for the server.
func (s *Server) API() v1.API { return s.api }

// WorkDir returns the directory holding prometheus.yml, prometheus.log and data/.
func (s *Server) WorkDir() string { return s.workDir }

// ConfigPath returns the path of the generated prometheus.yml (rewrite it, then call Reload).
func (s *Server) ConfigPath() string { return s.configPath }

// LogPath returns the path of the file receiving Prometheus's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// kill stops the current process group without grace and waits for it to be reaped.
func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
	default:
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Stop sends SIGTERM to the process group, waits ≤10s, then SIGKILLs; later calls return the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	var errs []error
	select {
	case <-s.done:
		if s.waitErr != nil {
			errs = append(errs, fmt.Errorf("prometheus had exited before Stop: %w", s.waitErr))
		}
	default:
		if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("send SIGTERM to prometheus: %w", err))
		}
		select {
		case <-s.done:
			if s.waitErr != nil {
				errs = append(errs, fmt.Errorf("prometheus exit after SIGTERM: %w", s.waitErr))
			}
		case <-time.After(stopTimeout):
			s.kill()
			errs = append(errs, fmt.Errorf("prometheus did not exit within %v of SIGTERM and was killed", stopTimeout))
		}
	}
	if err := s.logFile.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close prometheus log: %w", err))
	}
	if s.tempDir {
		if err := os.RemoveAll(s.workDir); err != nil {
			errs = append(errs, fmt.Errorf("remove prometheus work dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Restart stops the server (SIGTERM, SIGKILL after 10 s) and starts it again on the same
// address with the same data directory, as a crashed or upgraded Prometheus comes back; it
// returns once the new process is ready. down, if set, runs while no process listens.
func (s *Server) Restart(ctx context.Context, down func()) error {
	if s.cmd == nil || s.args == nil {
		return errors.New("restart: the server was never started")
	}
	select {
	case <-s.done:
	default:
		if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("restart: SIGTERM: %w", err)
		}
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			s.kill()
		}
	}
	if down != nil {
		down()
	}
	addr := strings.TrimPrefix(strings.TrimPrefix(s.url, "http://"), "https://")
	if err := s.launchAt(ctx, s.bin, s.args, addr); err != nil {
		return fmt.Errorf("restart on %s: %w", addr, err)
	}
	return nil
}

// Pause stops the server's processes (SIGSTOP): its port still accepts connections, but nothing
// answers, as with a hung server. Resume continues them.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	select {
	case <-s.done:
		return fmt.Errorf("send %v: the server has exited", sig)
	default:
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("send %v to the server: %w", sig, err)
	}
	return nil
}

// Reload asks Prometheus to re-read its configuration (POST /-/reload).
func (s *Server) Reload(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/-/reload", nil)
	if err != nil {
		return fmt.Errorf("build reload request: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s/-/reload: %w", s.url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s/-/reload: status %s: %s", s.url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitForSeries polls the instant query every 100ms until it returns at least n samples (see sampleCount), bounded by ctx.
func (s *Server) WaitForSeries(ctx context.Context, query string, n int) error {
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	var (
		last    int
		lastErr error
	)
	for {
		v, _, _, err := s.api.Query(ctx, query, time.Time{})
		if err == nil {
			last, lastErr = sampleCount(v), nil
			if last >= n {
				return nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-s.done:
			return fmt.Errorf("wait for %d samples of %q: prometheus exited (%v); log tail:\n%s", n, query, s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("wait for %d samples of %q: got %d (last error: %v): %w", n, query, last, lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

// sampleCount counts the samples in a query result: one per vector element,
// every point of every matrix series, and one for a scalar or string.
func sampleCount(v model.Value) int {
	switch v := v.(type) {
	case model.Vector:
		return len(v)
	case model.Matrix:
		n := 0
		for _, ss := range v {
			n += len(ss.Values) + len(ss.Histograms)
		}
		return n
	case *model.Scalar, *model.String:
		return 1
	default:
		return 0
	}
}
