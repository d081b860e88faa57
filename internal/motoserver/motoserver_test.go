package motoserver

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartResetAWSConfig(t *testing.T) {
	srv := Start(t)
	if again := Start(t); again != srv {
		t.Fatalf("second Start returned another server: %s, want %s", again.Endpoint, srv.Endpoint)
	}
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q, want a loopback URL", srv.Endpoint)
	}
	cfg := AWSConfig(t, srv.Endpoint)
	if cfg.Region != Region {
		t.Fatalf("Region = %q, want %q", cfg.Region, Region)
	}
	sm := secretsmanager.NewFromConfig(cfg)
	ctx := t.Context()

	srv.Reset(t)
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("motoserver-test"), SecretString: aws.String("v1"),
	}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("motoserver-test")})
	if err != nil {
		t.Fatalf("GetSecretValue: %v", err)
	}
	if got := aws.ToString(out.SecretString); got != "v1" {
		t.Fatalf("SecretString = %q, want %q", got, "v1")
	}

	srv.Reset(t)
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("motoserver-test")})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("GetSecretValue after Reset: err = %v, want ResourceNotFoundException", err)
	}
}

func TestStartWithoutCommand(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := start(); !errors.Is(err, errNotInstalled) {
		t.Fatalf("start() with an empty PATH: err = %v, want errNotInstalled", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnop", "q"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	if got, want := b.String(), "jklmnopq"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// lockProbe is an inner client that checks, on every request, that the serial client holds
// its lock while the request is in flight.
type lockProbe struct {
	c        *serialClient
	calls    atomic.Int64
	unlocked atomic.Bool // set when a request ran without the lock held
}

func (p *lockProbe) Do(r *http.Request) (*http.Response, error) {
	p.calls.Add(1)
	if p.c.mu.TryLock() {
		p.c.mu.Unlock()
		p.unlocked.Store(true)
	}
	return &http.Response{StatusCode: http.StatusTeapot, Request: r}, nil
}

func TestSerialHTTPClient(t *testing.T) {
	if _, ok := SerialHTTPClient().(*serialClient); !ok {
		t.Fatalf("SerialHTTPClient() is a %T, want a *serialClient", SerialHTTPClient())
	}
	c := &serialClient{}
	probe := &lockProbe{c: c}
	c.inner = probe
	const requests = 16
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1/", nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := c.Do(req)
			if err != nil || resp.StatusCode != http.StatusTeapot || resp.Request != req {
				t.Errorf("Do = %+v, %v; want the inner client's response", resp, err)
			}
		})
	}
	wg.Wait()
	if n := probe.calls.Load(); n != requests {
		t.Errorf("inner client saw %d requests, want %d", n, requests)
	}
	if probe.unlocked.Load() {
		t.Error("a request reached the inner client without the lock held")
	}
}
