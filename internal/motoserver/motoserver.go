package motoserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Region is the AWS region of the configurations AWSConfig builds.
const Region = "eu-central-1"

const (
	command       = "moto_server"
	startAttempts = 3                // each on a new port, in case another process took it
	readyTimeout  = 60 * time.Second // a cold Python start on a busy CI machine is slow
	stopTimeout   = 5 * time.Second
)

// Server is a running moto server.
type Server struct {
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:40123".
	Endpoint string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	output *tailBuffer   // the end of its stdout and stderr, for error messages
}

// The one server of this test binary.
var (
	once     sync.Once
	server   *Server
	startErr error
)

var errNotInstalled = errors.New(command + " is not on PATH; install it with: pip install 'moto[server]'")

// Start returns the moto server of this test binary, starting it on the first call. Without
// moto_server on PATH it skips the test, or fails it when the environment variable CI is set.
func Start(tb testing.TB) *Server {
	tb.Helper()
	once.Do(func() { server, startErr = start() })
	switch {
	case errors.Is(startErr, errNotInstalled) && os.Getenv("CI") == "":
		tb.Skipf("motoserver: %v (CI is not set, so the test is skipped)", startErr)
	case startErr != nil:
		tb.Fatalf("motoserver: %v", startErr)
	}
	return server
}

// Main runs the tests of m, stops the server if one was started and exits with the tests'
// status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		if err := server.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "motoserver: %v\n", err)
		}
	}
	os.Exit(code)
}

// Reset makes the server forget every resource created so far (POST /moto-api/reset).
func (s *Server) Reset(tb testing.TB) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodPost, s.Endpoint+"/moto-api/reset", nil)
	if err != nil {
		tb.Fatalf("motoserver: reset: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("motoserver: reset: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("motoserver: reset: HTTP %d", resp.StatusCode)
	}
}

// AWSConfig returns an AWS SDK configuration for the server at endpoint: static dummy
// credentials, region eu-central-1 and endpoint as the base endpoint of every service. Nothing
// is read from the environment or from ~/.aws. S3 clients must still set UsePathStyle.
func AWSConfig(tb testing.TB, endpoint string) aws.Config {
	tb.Helper()
	if endpoint == "" {
		tb.Fatal("motoserver: AWSConfig: empty endpoint")
	}
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

func start() (*Server, error) {
	path, err := exec.LookPath(command)
	if err != nil {
		return nil, errNotInstalled
	}
	var errs []error
	for range startAttempts {
		s, err := startOn(path)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("start %s: %w", command, errors.Join(errs...))
}

// startOn starts the server on a free port and waits until it answers.
func startOn(path string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		exited:   make(chan struct{}),
		output:   &tailBuffer{max: 4 << 10},
	}
	s.cmd = exec.Command(path, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	configure(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("port %d: %w", port, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("port %d: %w; output: %s", port, err, s.output)
	}
	return s, nil
}

// waitReady polls the server until it answers, the process exits or readyTimeout passes.
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	delay := 20 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/moto-api/", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-s.exited:
			t.Stop()
			return errors.New("server exited before it answered")
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("server did not answer within %s", readyTimeout)
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// stop ends the server process (and anything it started) and waits for it.
func (s *Server) stop() error {
	terminate(s.cmd)
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
		kill(s.cmd)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s (pid %d) did not exit", command, s.cmd.Process.Pid)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it; it is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.max; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
