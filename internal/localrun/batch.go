package localrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// BatchPrefix is where invoices wait for a batch run (BATCH_PREFIX of the functions);
// BatchStateMachineName is the local batch state machine's name.
const (
	BatchPrefix           = "batch/"
	BatchStateMachineName = "ksef-local-batch"
)

// UploadBatch stores body in the invoice bucket as batch/<name> (name may hold folders) and
// returns the new version, for the next batch run to send.
func (s *Stack) UploadBatch(ctx context.Context, name string, body []byte) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || name != path.Clean(name) || strings.HasPrefix(name, "manifests/") {
		return "", fmt.Errorf("localrun: invalid name %q under the batch prefix", name)
	}
	return s.Upload(ctx, BatchPrefix+name, body)
}

// BatchRun is what one batch run did: its execution, and what the functions stored for every
// invoice waiting under batch/ (its latest version).
type BatchRun struct {
	Execution *Execution
	Invoices  []*BatchInvoice // in key order
}

// BatchInvoice is one invoice of a batch run: its ledger item (nil if the run did not take it
// in) and the documents stored next to it under results/.
type BatchInvoice struct {
	Key       string
	VersionID string
	Invoice   *ledger.Invoice

	ResultKey  string // results/<key>.result.json: the result, or the notice of a duplicate upload
	ResultJSON []byte
	UPOKey     string // results/<key>.upo.xml
	UPO        []byte
	ErrorKey   string // results/<key>.error.json
	ErrorJSON  []byte
}

// Status returns the invoice's status in the ledger ("accepted", "rejected", "invalid",
// "failed", "duplicate-upload", ...), or "" if no run took it in.
func (b *BatchInvoice) Status() string {
	if b.Invoice == nil {
		return ""
	}
	return string(b.Invoice.Status)
}

// Accepted reports whether KSeF accepted the invoice (or already held it: reconciled).
func (b *BatchInvoice) Accepted() bool {
	return b.Invoice != nil && b.Invoice.Status == ledger.StatusAccepted
}

// KSeFNumber returns the invoice's KSeF number (the original's, for a reconciled duplicate).
func (b *BatchInvoice) KSeFNumber() string {
	if b.Invoice == nil {
		return ""
	}
	return b.Invoice.KSeFNumber
}

// Failure returns why an invoice that was not accepted was not: KSeF's code and details, or the
// validation error, from the report stored next to it (and the ledger); nil if it was accepted.
func (b *BatchInvoice) Failure() *Failure {
	if b.Accepted() {
		return nil
	}
	f := &Failure{}
	fillFailure(f, b.ErrorJSON)
	if f.Message == "" && b.Invoice != nil && b.Invoice.Reason != nil {
		r := b.Invoice.Reason
		f.Code, f.Message, f.Details = r.Code, r.Message, r.Details
	}
	if f.Message == "" && b.Invoice != nil && b.Invoice.Status == ledger.StatusDuplicateUpload {
		f.Error, f.Message = "duplicate-upload", "the same invoice content was already taken in as "+b.Invoice.DuplicateOf
	}
	return f
}

// RunBatch runs one execution of the batch definition (Options.BatchDefinition) for nip, as the
// schedule starts it ({"nip": ...}), and reads back, for every invoice waiting under batch/,
// its ledger item and what the functions stored next to it.
func (s *Stack) RunBatch(ctx context.Context, nip string) (*BatchRun, error) {
	switch {
	case s.opts.BatchDefinition == "":
		return nil, errors.New("localrun: the stack has no batch definition (Options.BatchDefinition)")
	case s.opts.Functions[FunctionBatch] == "":
		return nil, fmt.Errorf("localrun: the stack has no %s function (Options.Functions)", FunctionBatch)
	}
	if _, ok := s.ksefTokens[nip]; !ok {
		return nil, fmt.Errorf("localrun: NIP %s is not set up (Options.NIPs)", nip)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("localrun: execution name: %w", err)
	}
	exec, err := s.runDefinition(ctx, s.opts.BatchDefinition, BatchStateMachineName, map[string]string{"nip": nip}, "batch-"+hex.EncodeToString(b))
	if err != nil {
		return nil, fmt.Errorf("batch run: %w", err)
	}
	run := &BatchRun{Execution: exec}
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(BatchPrefix)}
	for {
		page, err := s.s3.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.opts.Bucket, BatchPrefix, err)
		}
		for _, v := range page.Versions {
			key := aws.ToString(v.Key)
			if !aws.ToBool(v.IsLatest) || strings.HasPrefix(key, BatchPrefix+"manifests/") {
				continue
			}
			inv, err := s.batchInvoice(ctx, key, aws.ToString(v.VersionId))
			if err != nil {
				return nil, err
			}
			run.Invoices = append(run.Invoices, inv)
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
	slices.SortFunc(run.Invoices, func(a, b *BatchInvoice) int { return strings.Compare(a.Key, b.Key) })
	return run, nil
}

func (s *Stack) batchInvoice(ctx context.Context, key, version string) (*BatchInvoice, error) {
	b := &BatchInvoice{
		Key: key, VersionID: version,
		ResultKey: ResultPrefix + key + ".result.json", UPOKey: ResultPrefix + key + ".upo.xml", ErrorKey: ResultPrefix + key + ".error.json",
	}
	inv, err := s.LedgerInvoice(ctx, ledger.ObjectID(s.opts.Bucket, key, version))
	switch {
	case err == nil:
		b.Invoice = inv
	case !errors.Is(err, ledger.ErrNotFound):
		return nil, fmt.Errorf("ledger item of %s: %w", key, err)
	}
	for _, o := range []struct {
		key string
		dst *[]byte
	}{{b.ResultKey, &b.ResultJSON}, {b.UPOKey, &b.UPO}, {b.ErrorKey, &b.ErrorJSON}} {
		body, err := s.Object(ctx, o.key)
		if err != nil {
			return nil, fmt.Errorf("results of %s: %w", key, err)
		}
		*o.dst = body
	}
	// A document written for an earlier version of the key is not this version's.
	for _, doc := range []*[]byte{&b.ResultJSON, &b.ErrorJSON} {
		if *doc != nil && documentVersion(*doc) != version {
			*doc = nil
		}
	}
	if b.Invoice == nil || b.Invoice.UPOKey == "" {
		b.UPO = nil
	}
	return b, nil
}

// documentVersion returns the object version a stored document is about (its invoice).
func documentVersion(doc []byte) string {
	var d struct {
		Invoice struct {
			VersionID string `json:"versionId"`
		} `json:"invoice"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return ""
	}
	return d.Invoice.VersionID
}
