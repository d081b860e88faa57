package localrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child program. It runs in its own process group, so that stopping it also stops
// what it started (aws-lambda-rie starts the function's bootstrap), and it is killed by the kernel
// if the harness dies without cleaning up (Pdeathsig). Its standard output and error go to a log
// file under the run directory.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}  // closed when the process has exited and its output is drained
	err     error          // exit error, valid after done
	stdin   io.WriteCloser // the process's standard input if processSpec.stdin was set
}

// processSpec describes a child program to start.
type processSpec struct {
	name    string
	argv    []string
	env     []string
	dir     string
	logPath string
	// lines, if set, receives every line the program writes to stdout or stderr (in addition to
	// the log file). It is called from one goroutine per stream.
	lines func(line string)
	// stdoutLines, if set, receives every line of stdout instead of the log file (which then
	// gets stderr only). It is called from one goroutine.
	stdoutLines func(line string)
	// stdin, if set, makes the process's standard input a pipe, returned in process.stdin.
	stdin bool
}

func startProcess(spec processSpec) (*process, error) {
	f, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", spec.name, err)
	}
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Env = spec.env
	cmd.Dir = spec.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: spec.name, logPath: spec.logPath, cmd: cmd, done: make(chan struct{})}
	if spec.stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		p.stdin = w
	}

	var streams sync.WaitGroup
	switch {
	case spec.stdoutLines != nil:
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		cmd.Stderr = f
		streams.Add(1)
		go func() {
			defer streams.Done()
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
			for sc.Scan() {
				spec.stdoutLines(sc.Text())
			}
			_, _ = io.Copy(io.Discard, stdout)
		}()
	case spec.lines == nil:
		cmd.Stdout = f
		cmd.Stderr = f
	default:
		var mu sync.Mutex // serialises writes of the two streams to the log file
		pipe := func(r io.Reader) {
			defer streams.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
			for sc.Scan() {
				line := sc.Text()
				mu.Lock()
				_, _ = f.WriteString(line + "\n")
				mu.Unlock()
				spec.lines(line)
			}
			_, _ = io.Copy(io.Discard, r)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
		streams.Add(2)
		go pipe(stdout)
		go pipe(stderr)
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	go func() {
		streams.Wait()
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how the process ended, with the tail of its log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); last output:\n%s", p.name, p.err, tail(p.logPath, 20))
}

// stop asks the process group to terminate (SIGTERM), waits up to grace, then kills the group.
// The group is killed in any case, so that children of the process do not outlive it.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// portAttempts is how often a process is started on a fresh port when it exits before it is
// ready: a port that freePort found free can be taken by another process (go test runs packages
// in parallel, each with its own stack) before this one binds it.
const portAttempts = 3

// freePort asks the kernel for a free TCP port on 127.0.0.1. The port is released before the
// caller's program binds it; the window is small and ports are not reused immediately.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// errNotReady is returned by a readiness probe that should be retried.
var errNotReady = errors.New("not ready")

// waitReady polls probe every interval until it returns nil, the process exits, ctx ends or
// timeout passes. A probe returns errNotReady (or any error) to be polled again.
func waitReady(parent context.Context, p *process, timeout, interval time.Duration, probe func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		if last = probe(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("wait for %s: %w", p.name, parent.Err())
			}
			return fmt.Errorf("%s not ready after %v (last probe: %v); log %s:\n%s", p.name, timeout, last, p.logPath, tail(p.logPath, 20))
		case <-t.C:
		}
	}
}

// probeTCP succeeds once something accepts connections on addr.
func probeTCP(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
