package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
)

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("ksef-local demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	out := fs.String("out", "out", "directory for copies of the UPOs and the results")
	mode := fs.String("mode", "online", "online: send one invoice through the invoice state machine (statemachine.asl.json); batch: send a folder of invoices in a KSeF batch session through the batch run (batch.asl.json)")
	dir := fs.String("dir", "", "batch mode: send every *.xml of this folder (default: the official samples that are not duplicates of each other, the duplicates renumbered)")
	if err := fs.Parse(args); err != nil {
		return errors.Join(errUsage, err) // the flag package has printed the usage
	}
	switch {
	case *mode == "batch" && c.invoice != "":
		fmt.Fprintln(stderr, "ksef-local demo: --invoice is for --mode online; give a folder with --dir")
		return errUsage
	case *mode == "online" && *dir != "":
		fmt.Fprintln(stderr, "ksef-local demo: --dir is for --mode batch")
		return errUsage
	case *mode != "online" && *mode != "batch":
		fmt.Fprintf(stderr, "ksef-local demo: unknown mode %q (want online or batch)\n", *mode)
		return errUsage
	}
	if err := c.resolve(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	log := c.logger(stderr)
	if *mode == "batch" {
		return demoBatch(ctx, &c, *dir, *out, stdout, log)
	}
	body, name, err := c.invoiceBytes()
	if err != nil {
		return err
	}
	opts, err := c.build(ctx, log, functions)
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

	// The S3 entry point, as on AWS: upload under the inbox, S3's "Object Created" event to the
	// ingest function, which records the invoice in the ledger and starts the execution.
	log.InfoContext(ctx, "uploading invoice", "invoice", name, "nip", c.nip, "bytes", len(body))
	in, err := st.Ingest(ctx, name, body)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "upload taken in", "action", in.Outcome.Action, "invoiceId", in.Outcome.InvoiceID)
	res := in.Result
	if res == nil {
		fmt.Fprintf(stdout, "Invoice %s was NOT taken in (%s)\n", name, in.Outcome.Action)
		fmt.Fprintf(stdout, "Reason: %s\n", in.Outcome.Reason)
		return errRejected
	}
	e := res.Execution
	log.InfoContext(ctx, "execution finished", "status", e.Status, "duration", e.Duration().Round(time.Millisecond),
		"stateTransitions", e.StateTransitions, "states", strings.Join(e.States, " > "))

	if !res.Accepted() {
		f := res.Failure()
		fmt.Fprintf(stdout, "Invoice %s was NOT accepted (%s)\n", name, f.Error)
		if f.Code != 0 {
			fmt.Fprintf(stdout, "KSeF code: %d\n", f.Code)
		}
		fmt.Fprintf(stdout, "Reason: %s\n", f.Message)
		for _, d := range f.Details {
			fmt.Fprintf(stdout, "  - %s\n", d)
		}
		if res.ErrorJSON != nil {
			fmt.Fprintf(stdout, "Report: s3://%s/%s\n", res.Bucket, res.ErrorKey)
		}
		return errRejected
	}

	fmt.Fprintf(stdout, "Invoice %s accepted by KSeF\n", name)
	fmt.Fprintf(stdout, "KSeF number: %s\n", res.KSeFNumber())
	if res.UPO == nil {
		return fmt.Errorf("the execution succeeded but no UPO is stored at s3://%s/%s", res.Bucket, res.UPOKey)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	upoCopy := filepath.Join(*out, name+".upo.xml")
	if err := os.WriteFile(upoCopy, res.UPO, 0o644); err != nil {
		return fmt.Errorf("write UPO copy: %w", err)
	}
	fmt.Fprintf(stdout, "UPO: s3://%s/%s (local bucket)\n", res.Bucket, res.UPOKey)
	fmt.Fprintf(stdout, "UPO copy: %s\n", upoCopy)
	if res.ResultJSON != nil {
		resultCopy := filepath.Join(*out, name+".result.json")
		if err := os.WriteFile(resultCopy, res.ResultJSON, 0o644); err != nil {
			return fmt.Errorf("write result copy: %w", err)
		}
		fmt.Fprintf(stdout, "Result: s3://%s/%s, copy %s\n", res.Bucket, res.ResultKey, resultCopy)
	}
	return nil
}
