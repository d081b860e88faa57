package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
)

// p2 matches the invoice number element of an FA(3) invoice (with or without a prefix).
var p2 = regexp.MustCompile(`<((?:[A-Za-z_][\w.-]*:)?P_2)>[^<]*</((?:[A-Za-z_][\w.-]*:)?P_2)>`)

// withNumber returns the invoice with its P_2 (invoice number) replaced; nothing else changes.
func withNumber(invoice []byte, number string) ([]byte, error) {
	loc := p2.FindSubmatchIndex(invoice)
	if loc == nil {
		return nil, errors.New("the invoice has no P_2 element")
	}
	open := string(invoice[loc[2]:loc[3]])
	out := slices.Concat(invoice[:loc[0]], []byte("<"+open+">"+number+"</"+open+">"), invoice[loc[1]:])
	return out, nil
}

// benchReport is what bench prints. Durations are in seconds in JSON.
type benchReport struct {
	Invoices    int `json:"invoices"`
	Accepted    int `json:"accepted"`
	NotAccepted int `json:"notAccepted"`
	Concurrency int `json:"concurrency"`
	Instances   int `json:"instancesPerFunction"`

	WallSeconds            float64 `json:"wallSeconds"`
	AuthDelaySeconds       float64 `json:"authDelaySeconds"`
	AcceptDelaySeconds     float64 `json:"acceptDelaySeconds"`
	ProcessingDelaySeconds float64 `json:"processingDelaySeconds"`
	// BeyondDelaysSeconds is the wall time minus the least time KSeF itself takes for the first
	// invoice (one login, then acceptance and processing): the pipeline's own overhead.
	BeyondDelaysSeconds float64 `json:"beyondDelaysSeconds"`

	ExecutionSeconds      stats `json:"executionSeconds"`     // per invoice
	ExecutionBeyondDelay  stats `json:"executionBeyondDelay"` // per invoice, minus accept + processing delay
	TransitionsPerInvoice stats `json:"stateTransitionsPerInvoice"`

	KSeFLogins    int            `json:"ksefLogins"`
	KSeFSessions  int            `json:"ksefSessionsOpened"`
	KSeFRequests  int            `json:"ksefRequests"`
	SecretsWrites int            `json:"secretsManagerWrites"`
	SecretsReads  int            `json:"secretsManagerReads"`
	Invocations   map[string]int `json:"lambdaInvocations"`
	Failures      []string       `json:"failures,omitempty"`
	RunDir        string         `json:"runDir"`
}

type stats struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	Max  float64 `json:"max"`
}

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { return s[int(p*float64(len(s)-1)+0.5)] }
	return stats{Mean: sum / float64(len(s)), Min: s[0], P50: q(0.5), P95: q(0.95), Max: s[len(s)-1]}
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("ksef-local bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	count := fs.Int("count", 20, "number of invoices")
	concurrency := fs.Int("concurrency", 5, "executions running at once")
	instances := fs.Int("instances", 2, "aws-lambda-rie instances (warm containers) per function")
	authDelay := fs.Duration("auth-delay", time.Second, "emulator: authentication 100 -> 200")
	acceptDelay := fs.Duration("accept-delay", 500*time.Millisecond, "emulator: invoice 100 -> 150")
	processingDelay := fs.Duration("processing-delay", 1500*time.Millisecond, "emulator: invoice 150 -> 200")
	rateLimits := fs.Bool("rate-limits", true, "emulator: enforce KSeF's request rate limits")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return errors.Join(errUsage, err) // the flag package has printed the usage
	}
	if *count < 1 || *concurrency < 1 || *instances < 1 {
		return errors.New("--count, --concurrency and --instances must be at least 1")
	}
	if err := c.resolve(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	log := c.logger(stderr)
	sample, name, err := c.invoiceBytes()
	if err != nil {
		return err
	}
	runID := time.Now().Format("150405")
	invoices := make([][]byte, *count)
	for i := range invoices {
		if invoices[i], err = withNumber(sample, fmt.Sprintf("BENCH/%s/%05d", runID, i+1)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	opts, err := c.build(ctx, log, functions)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.runDir, 0o755); err != nil {
		return err
	}
	if opts.EmulatorConfig == "" {
		cfg, err := json.Marshal(map[string]any{
			"authDelay": authDelay.String(), "acceptDelay": acceptDelay.String(),
			"processingDelay": processingDelay.String(), "rateLimits": *rateLimits,
		})
		if err != nil {
			return err
		}
		opts.EmulatorConfig = filepath.Join(c.runDir, "emulator.json")
		if err := os.WriteFile(opts.EmulatorConfig, cfg, 0o600); err != nil {
			return err
		}
	} else {
		log.Warn("--emulator-config given: the delays in the report are those of the flags, check they match")
	}
	opts.Instances = *instances
	st, err := localrun.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("stop the local stack", "error", err)
		}
	}()

	log.InfoContext(ctx, "sending invoices", "count", *count, "concurrency", *concurrency, "instances", *instances)
	type outcome struct {
		res *localrun.Result
		err error
	}
	outcomes := make([]outcome, *count)
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				file := fmt.Sprintf("bench-%05d-%s", i+1, name)
				res, err := st.SendInvoice(ctx, c.nip, file, invoices[i])
				outcomes[i] = outcome{res, err}
				if err == nil {
					log.DebugContext(ctx, "invoice done", "invoice", file, "status", res.Execution.Status, "ksefNumber", res.KSeFNumber())
				}
			}
		}()
	}
feed:
	for i := range *count {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	m := st.Metrics()
	r := benchReport{
		Invoices: *count, Concurrency: *concurrency, Instances: *instances,
		WallSeconds:            wall.Seconds(),
		AuthDelaySeconds:       authDelay.Seconds(),
		AcceptDelaySeconds:     acceptDelay.Seconds(),
		ProcessingDelaySeconds: processingDelay.Seconds(),
		BeyondDelaysSeconds:    (wall - *authDelay - *acceptDelay - *processingDelay).Seconds(),
		KSeFLogins:             m.KSeFLogins,
		KSeFSessions:           m.KSeFSessions,
		SecretsWrites:          m.SecretsWrites,
		SecretsReads:           m.SecretsReads,
		Invocations:            map[string]int{},
		RunDir:                 st.RunDir(),
	}
	for _, n := range m.KSeFRequests {
		r.KSeFRequests += n
	}
	for f, s := range m.Functions {
		r.Invocations[f] = s.Invocations
	}
	var durations, beyond, transitions []float64
	for i, o := range outcomes {
		switch {
		case o.err != nil:
			r.NotAccepted++
			r.Failures = append(r.Failures, fmt.Sprintf("invoice %d: %v", i+1, o.err))
			continue
		case !o.res.Accepted():
			r.NotAccepted++
			f := o.res.Failure()
			r.Failures = append(r.Failures, fmt.Sprintf("invoice %d: %s %d %s", i+1, f.Error, f.Code, f.Message))
		default:
			r.Accepted++
		}
		d := o.res.Execution.Duration()
		durations = append(durations, d.Seconds())
		beyond = append(beyond, (d - *acceptDelay - *processingDelay).Seconds())
		transitions = append(transitions, float64(o.res.Execution.StateTransitions))
	}
	r.ExecutionSeconds = summarize(durations)
	r.ExecutionBeyondDelay = summarize(beyond)
	r.TransitionsPerInvoice = summarize(transitions)

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printReport(stdout, r)
	}
	if r.NotAccepted > 0 {
		return errRejected
	}
	return nil
}

func printReport(w io.Writer, r benchReport) {
	fmt.Fprintf(w, "invoices:                 %d sent, %d accepted, %d not accepted (concurrency %d, %d instances per function)\n",
		r.Invoices, r.Accepted, r.NotAccepted, r.Concurrency, r.Instances)
	fmt.Fprintf(w, "wall time:                %.2fs\n", r.WallSeconds)
	fmt.Fprintf(w, "emulator delays:          auth %.2fs, accept %.2fs, processing %.2fs\n", r.AuthDelaySeconds, r.AcceptDelaySeconds, r.ProcessingDelaySeconds)
	fmt.Fprintf(w, "wall time beyond delays:  %.2fs (wall - auth - accept - processing)\n", r.BeyondDelaysSeconds)
	fmt.Fprintf(w, "per invoice:              mean %.2fs, p50 %.2fs, p95 %.2fs, max %.2fs; beyond accept+processing mean %.2fs\n",
		r.ExecutionSeconds.Mean, r.ExecutionSeconds.P50, r.ExecutionSeconds.P95, r.ExecutionSeconds.Max, r.ExecutionBeyondDelay.Mean)
	fmt.Fprintf(w, "state transitions:        %.1f per invoice (min %.0f, max %.0f)\n", r.TransitionsPerInvoice.Mean, r.TransitionsPerInvoice.Min, r.TransitionsPerInvoice.Max)
	fmt.Fprintf(w, "KSeF logins:              %d\n", r.KSeFLogins)
	fmt.Fprintf(w, "KSeF sessions opened:     %d\n", r.KSeFSessions)
	fmt.Fprintf(w, "KSeF requests:            %d\n", r.KSeFRequests)
	fmt.Fprintf(w, "Secrets Manager writes:   %d (reads %d)\n", r.SecretsWrites, r.SecretsReads)
	names := make([]string, 0, len(r.Invocations))
	for n := range r.Invocations {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprint(w, "Lambda invocations:      ")
	for _, n := range names {
		fmt.Fprintf(w, " %s %d", n, r.Invocations[n])
	}
	fmt.Fprintln(w)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  not accepted: %s\n", f)
	}
	fmt.Fprintf(w, "logs:                     %s\n", r.RunDir)
}
