package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syncWriter is a goroutine-safe buffer for the log.
type syncWriter struct {
	ch chan []byte
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.ch <- bytes.Clone(p)
	return len(p), nil
}

func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "emulator.json")
	if err := os.WriteFile(cfgPath, []byte(`{"authDelay": "10ms", "maxInvoicesPerSession": 5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	outR, outW := io.Pipe()
	logs := syncWriter{ch: make(chan []byte, 100)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--token", "5265877635=tok-1", "--config", cfgPath, "--validate"}, outW, logs)
		outW.Close()
	}()

	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatalf("read ready line: %v", err)
	}
	var r ready
	if err := json.Unmarshal([]byte(line), &r); err != nil || !strings.HasSuffix(r.BaseURL, "/v2") || !strings.HasSuffix(r.AdminURL, "/admin") {
		t.Fatalf("ready line %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()

	resp, err := http.Post(r.BaseURL+"/auth/challenge", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("challenge: HTTP %d", resp.StatusCode)
	}
	// --validate answers a request that breaks the API description itself.
	resp, err = http.Get(r.BaseURL + "/sessions?sessionType=Online")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("request without bearer: HTTP %d, want 401", resp.StatusCode)
	}
	resp, err = http.Get(r.BaseURL + "/rate-limits")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
	close(logs.ch)
	var all bytes.Buffer
	for b := range logs.ch {
		all.Write(b)
	}
	for _, want := range []string{`"path":"/v2/auth/challenge"`, `"status":200`, `"msg":"invalid request"`, `"msg":"stopped"`} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, all.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--token", "no-equals-sign"},
		{"--config", "/nonexistent/emulator.json"},
		{"--addr", "not an address"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		if err := run(t.Context(), args, io.Discard, &stderr); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

func TestLoadConfigRateLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		content string
		want    bool
	}{
		{`{}`, true},
		{`{"rateLimits": false}`, false},
		{`{"rateLimits": true}`, true},
	} {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		if err != nil || cfg.RateLimits != tt.want {
			t.Errorf("loadConfig(%s): rateLimits %v, %v; want %v", tt.content, cfg.RateLimits, err, tt.want)
		}
	}
	if cfg, err := loadConfig(""); err != nil || !cfg.RateLimits {
		t.Errorf("no config file: rate limits %v, %v; want on", cfg.RateLimits, err)
	}
}
