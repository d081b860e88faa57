package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/specvalidate"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
)

// tokenFlags collects repeated --token NIP=TOKEN flags.
type tokenFlags map[string][]string

func (t tokenFlags) String() string { return fmt.Sprintf("%d contexts", len(t)) }

func (t tokenFlags) Set(s string) error {
	nip, token, ok := strings.Cut(s, "=")
	if !ok || nip == "" || token == "" {
		return errors.New("want NIP=TOKEN")
	}
	t[nip] = append(t[nip], token)
	return nil
}

// ready is the line printed to stdout once the server listens.
type ready struct {
	BaseURL  string `json:"baseUrl"`
	AdminURL string `json:"adminUrl"`
}

// run serves the emulator until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ksef-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	configPath := fs.String("config", "", "JSON configuration file (see package emulator's Config)")
	validate := fs.Bool("validate", false, "validate requests and responses against the official OpenAPI description; answer invalid requests with 400 21405 and log every violation")
	rateLimits := fs.Bool("rate-limits", true, "enforce the KSeF request rate limits (overrides the configuration file)")
	tokens := tokenFlags{}
	fs.Var(tokens, "token", "NIP=TOKEN: a KSeF token valid in the context NIP (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "rate-limits" {
			cfg.RateLimits = *rateLimits
		}
	})
	if cfg.Tokens == nil {
		cfg.Tokens = map[string][]string{}
	}
	for nip, list := range tokens {
		cfg.Tokens[nip] = append(cfg.Tokens[nip], list...)
	}

	log := slog.New(slog.NewJSONHandler(stderr, nil))
	opts := []emulator.Option{emulator.WithLogger(log)}
	if *validate {
		opts = append(opts, emulator.WithSpecValidation(specvalidate.Options{
			RejectInvalidRequests: true,
			OnRequestError: func(r *http.Request, err error) {
				log.LogAttrs(r.Context(), slog.LevelWarn, "invalid request", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
			},
			OnResponseError: func(r *http.Request, status int, err error) {
				log.LogAttrs(r.Context(), slog.LevelError, "response violates the API description", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("error", err.Error()))
			},
		}))
	}
	e, err := emulator.New(cfg, opts...)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	root := "http://" + ln.Addr().String()
	if err := json.NewEncoder(stdout).Encode(ready{BaseURL: root + "/v2", AdminURL: root + "/admin"}); err != nil {
		_ = srv.Close()
		return fmt.Errorf("print ready line: %w", err)
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// loadConfig reads the configuration file; without one, rate limits are on (the binary's
// default) and everything else takes the package defaults. A file that does not mention
// rateLimits keeps them on too.
func loadConfig(path string) (emulator.Config, error) {
	if path == "" {
		return emulator.Config{RateLimits: true}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return emulator.Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := emulator.ParseConfig(strings.NewReader(string(data)))
	if err != nil {
		return emulator.Config{}, err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err == nil {
		if _, set := keys["rateLimits"]; !set {
			cfg.RateLimits = true
		}
	}
	return cfg, nil
}
