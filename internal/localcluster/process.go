package localcluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stopTimeout is how long Stop waits for one component after SIGTERM before SIGKILL.
const stopTimeout = 10 * time.Second

// process is one started control-plane component.
type process struct {
	name    string
	bin     string   // for restart
	args    []string // for restart
	env     []string // for restart (extra environment)
	dir     string   // for restart
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid after done is closed
}

// startProcess starts bin with args, sending stdout and stderr to logDir/name.log.
// The process gets its own process group and is SIGKILLed if this process dies.
// extraEnv is appended to this process's environment.
func startProcess(name, bin string, args, extraEnv []string, dir, logDir string) (*process, error) {
	return launchProcess(name, bin, args, extraEnv, dir, filepath.Join(logDir, name+".log"), os.O_TRUNC)
}

// launchProcess starts bin, opening logPath with O_CREATE|O_WRONLY|logMode (O_TRUNC or O_APPEND).
func launchProcess(name, bin string, args, extraEnv []string, dir, logPath string, logMode int) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|logMode, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, bin: bin, args: args, env: extraEnv, dir: dir, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has already exited, with its wait error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, waits up to timeout and then sends SIGKILL.
func (p *process) stop(timeout time.Duration) error {
	if done, _ := p.exited(); done {
		return nil
	}
	pgid := p.pid() // Setpgid makes the pid the group id of the group we created.
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", p.name, pgid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := p.kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.name, pgid, timeout)
}

// kill sends SIGKILL to the process group and waits up to 5 s for the process to be reaped.
func (p *process) kill() error {
	pgid := p.pid()
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.name, pgid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

// logTail returns the last lines of the component's log file for error messages.
func (p *process) logTail() string {
	return tailFile(p.logPath, 25, 4096)
}

// tailFile returns at most maxLines lines and maxBytes bytes from the end of path.
func tailFile(path string, maxLines int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	off := st.Size() - maxBytes
	if off < 0 {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot seek %s: %v)", path, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // drop the partial first line
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// failure builds an error for component p that includes the tail of its log.
func (p *process) failure(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if done, werr := p.exited(); done {
		msg += fmt.Sprintf(" (%s exited: %v)", p.name, werr)
	}
	return fmt.Errorf("%s; last lines of %s:\n%s", msg, p.logPath, p.logTail())
}

// Process is a server process a test harness started beside the control plane (KEDA, say): in its own
// process group, killed if the test process dies, its output appended to a log file.
type Process struct{ p *process }

// StartProcess starts bin with args, extraEnv appended to this process's environment, and stdout and stderr
// appended to logPath.
func StartProcess(name, bin string, args, extraEnv []string, logPath string) (*Process, error) {
	p, err := launchProcess(name, bin, args, extraEnv, "", logPath, os.O_APPEND)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// PID is the process id (and its process group's id).
func (p *Process) PID() int { return p.p.pid() }

// Exited reports whether the process has exited (Failure says how).
func (p *Process) Exited() bool {
	done, _ := p.p.exited()
	return done
}

// Stop sends SIGTERM to the process group, waits up to timeout, then SIGKILLs it; an error says it had to.
func (p *Process) Stop(timeout time.Duration) error { return p.p.stop(timeout) }

// Kill SIGKILLs the process group (a crash) and waits up to 5 s for the process to be reaped.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	return p.p.kill()
}

// Failure is an error of msg, saying whether the process exited and how, with the last lines of its log.
func (p *Process) Failure(msg string) error { return p.p.failure("%s", msg) }
