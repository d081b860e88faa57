package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// namedInvoice is an invoice file to send.
type namedInvoice struct {
	name string
	body []byte
}

// demoBatch uploads the invoices under batch/, runs the batch state machine once, as the
// schedule would, and prints per invoice its KSeF number or KSeF's code and details, copying
// the UPOs and results to out.
func demoBatch(ctx context.Context, c *common, dir, out string, stdout io.Writer, log *slog.Logger) error {
	invoices, err := batchInvoices(dir)
	if err != nil {
		return err
	}
	opts, err := c.build(ctx, log, batchFunctions)
	if err != nil {
		return err
	}
	st, err := localrun.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("stop the local stack", "error", err)
		}
		log.Info("logs kept", "runDir", st.RunDir())
	}()
	for _, inv := range invoices {
		if _, err := st.UploadBatch(ctx, inv.name, inv.body); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, "invoices waiting for the batch run", "count", len(invoices), "prefix", localrun.BatchPrefix, "nip", c.nip)
	run, err := st.RunBatch(ctx, c.nip)
	if err != nil {
		return err
	}
	e := run.Execution
	log.InfoContext(ctx, "batch run finished", "status", e.Status, "duration", e.Duration().Round(time.Millisecond),
		"stateTransitions", e.StateTransitions, "states", strings.Join(slices.Compact(e.States), " > "))

	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	accepted := 0
	for _, inv := range run.Invoices {
		name := strings.TrimPrefix(inv.Key, localrun.BatchPrefix)
		if !inv.Accepted() {
			f := inv.Failure()
			status := inv.Status()
			if status == "" {
				status = "not taken in"
			}
			fmt.Fprintf(stdout, "%s: NOT accepted (%s)", name, status)
			if f.Code != 0 {
				fmt.Fprintf(stdout, " KSeF code %d", f.Code)
			}
			if f.Message != "" {
				fmt.Fprintf(stdout, ": %s", f.Message)
			}
			fmt.Fprintln(stdout)
			for _, d := range f.Details {
				fmt.Fprintf(stdout, "  - %s\n", d)
			}
			continue
		}
		accepted++
		line := fmt.Sprintf("%s: KSeF number %s", name, inv.KSeFNumber())
		if inv.Invoice.Reconciled {
			line += " (KSeF already held this invoice: the original's number)"
		}
		if inv.UPO != nil {
			copyPath := filepath.Join(out, filepath.Base(name)+".upo.xml")
			if err := os.WriteFile(copyPath, inv.UPO, 0o644); err != nil {
				return fmt.Errorf("write UPO copy: %w", err)
			}
			line += ", UPO " + copyPath
		}
		if inv.ResultJSON != nil {
			if err := os.WriteFile(filepath.Join(out, filepath.Base(name)+".result.json"), inv.ResultJSON, 0o644); err != nil {
				return fmt.Errorf("write result copy: %w", err)
			}
		}
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintf(stdout, "%d of %d invoices accepted in the batch run (%s); UPOs and results in s3://%s/%s%s and copies in %s\n",
		accepted, len(run.Invoices), e.Status, st.Bucket(), localrun.ResultPrefix, localrun.BatchPrefix, out)
	if e.Status != localrun.StatusSucceeded {
		fmt.Fprintf(stdout, "The batch run ended %s: %s\n", e.Status, e.Error)
	}
	if accepted < len(run.Invoices) || e.Status != localrun.StatusSucceeded {
		return errRejected
	}
	return nil
}

// batchInvoices returns the *.xml files of dir, or by default the official samples that are not
// duplicates of each other for KSeF (seller, type and number), each duplicate renumbered.
func batchInvoices(dir string) ([]namedInvoice, error) {
	if dir == "" {
		return defaultBatch()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []namedInvoice
	for _, e := range entries {
		if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ".xml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read invoice: %w", err)
		}
		out = append(out, namedInvoice{e.Name(), b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no *.xml invoice in %s", dir)
	}
	return out, nil
}

func defaultBatch() ([]namedInvoice, error) {
	samples := official.SampleInvoices()
	names := slices.Sorted(maps.Keys(samples))
	seen := map[string]bool{}
	var out []namedInvoice
	for _, n := range names {
		body := samples[n]
		info, err := ksef.InspectInvoice(body, ksef.InspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("official sample %s: %w", n, err)
		}
		id := info.SellerNIP + "|" + info.InvoiceType + "|" + info.Number
		if seen[id] {
			// KSeF would answer 440 (duplicate): give it a number of its own.
			number := info.Number + "-" + strings.TrimSuffix(n, filepath.Ext(n))
			old := []byte("<P_2>" + info.Number + "</P_2>")
			if !bytes.Contains(body, old) {
				return nil, fmt.Errorf("official sample %s: no %s to renumber", n, old)
			}
			body = bytes.Replace(body, old, []byte("<P_2>"+number+"</P_2>"), 1)
			n = strings.TrimSuffix(n, filepath.Ext(n)) + "-renumbered.xml"
			id = info.SellerNIP + "|" + info.InvoiceType + "|" + number
		}
		seen[id] = true
		out = append(out, namedInvoice{n, body})
	}
	return out, nil
}
