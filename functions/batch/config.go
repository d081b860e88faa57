package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Defaults of the batch function's limits. One invocation takes in at most defaultMaxInvoices
// invoices (one full session) and defaultMaxBytes bytes of them. Measured (BenchmarkSend10000,
// 2 cores): taking in, packing, encrypting and sending 10 000 sample invoices costs 2.8 s of
// the function's own time, storing their outcomes 1.3 s; on AWS the calls add, 16 at a time, a
// ledger read, a ledger transaction, an S3 read and a ledger update per invoice (about 60 ms),
// some 40 s for 10 000, and a poll of 1000 outcomes about 8 s: far inside the 15 minutes a
// function may run, and the deadline check stops taking invoices in at half the time anyway.
// The bytes bound keeps the invoices and the encrypted archive, held together in memory,
// inside the function's 3 GB.
const (
	defaultBatchPrefix       = "batch/"
	defaultMaxInvoices       = 10_000
	defaultMaxBytes          = 800_000_000
	defaultSessionInvoices   = 10_000 // KSeF's default limit of invoices in a session
	defaultPartSize          = 20_000_000
	defaultPageSize          = 1000 // the most SessionInvoices gives at once
	defaultClaimTimeout      = 6 * time.Hour
	defaultWorkers           = 16
	defaultUploadConcurrency = 4
	manifestFolder           = "manifests/"
	maxInvoicesPerInvocation = 100_000
	maxSessionInvoices       = 10_000
)

// config is the batch function's configuration: the functions' common one (lambdaenv) and its
// own, from these environment variables (all optional):
//
//	BATCH_PREFIX              where invoices wait for the scheduled run (default batch/)
//	BATCH_MAX_INVOICES        invoices one invocation takes in (default 10000)
//	BATCH_MAX_BYTES           bytes of invoices one invocation takes in (default 800000000)
//	BATCH_SESSION_INVOICES    invoices per batch session (default 10000, KSeF's default limit;
//	                          lower it if KSeF set a lower one for the context)
type config struct {
	lambdaenv.Config
	BatchPrefix     string
	ManifestPrefix  string // BatchPrefix + "manifests/": ignored by the runs
	MaxInvoices     int
	MaxBytes        int64
	SessionInvoices int
	PartSize        int64         // bytes of an archive part before encryption
	PageSize        int           // invoices of a session stored per poll
	ClaimTimeout    time.Duration // after this a run's unfinished claim is given up by the next run
	Workers         int           // AWS calls in flight
	Uploads         int           // parts uploaded at once
}

// loadConfig reads the configuration with getenv (os.Getenv in main).
func loadConfig(getenv func(string) string) (config, error) {
	base, err := lambdaenv.LoadConfig(getenv)
	if err != nil {
		return config{}, err
	}
	c := config{
		Config:          base,
		BatchPrefix:     getenv("BATCH_PREFIX"),
		MaxInvoices:     defaultMaxInvoices,
		MaxBytes:        defaultMaxBytes,
		SessionInvoices: defaultSessionInvoices,
		PartSize:        defaultPartSize,
		PageSize:        defaultPageSize,
		ClaimTimeout:    defaultClaimTimeout,
		Workers:         defaultWorkers,
		Uploads:         defaultUploadConcurrency,
	}
	var problems []string
	if c.BatchPrefix == "" {
		c.BatchPrefix = defaultBatchPrefix
	}
	if !strings.HasSuffix(c.BatchPrefix, "/") {
		c.BatchPrefix += "/"
	}
	c.ManifestPrefix = c.BatchPrefix + manifestFolder
	for _, other := range []struct{ name, prefix string }{{"INBOX_PREFIX", c.InboxPrefix}, {"RESULT_PREFIX", c.ResultPrefix}} {
		if strings.HasPrefix(c.BatchPrefix, other.prefix) || strings.HasPrefix(other.prefix, c.BatchPrefix) {
			problems = append(problems, fmt.Sprintf("BATCH_PREFIX %q and %s %q overlap", c.BatchPrefix, other.name, other.prefix))
		}
	}
	if c.LedgerTable == "" {
		// The runs' guarantee (each object version sent once, even by overlapping runs) rests
		// on the ledger's conditional writes.
		problems = append(problems, "LEDGER_TABLE is not set")
	}
	if c.NIP == "" {
		problems = append(problems, "KSEF_NIP is not set (the NIP the stack sends for)")
	}
	num := func(name string, dst *int64, lo, hi int64) {
		s := getenv(name)
		if s == "" {
			return
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			problems = append(problems, fmt.Sprintf("%s %q is not a number from %d to %d", name, s, lo, hi))
			return
		}
		*dst = n
	}
	maxInvoices, sessionInvoices := int64(c.MaxInvoices), int64(c.SessionInvoices)
	num("BATCH_MAX_INVOICES", &maxInvoices, 1, maxInvoicesPerInvocation)
	num("BATCH_MAX_BYTES", &c.MaxBytes, ksef.DefaultMaxInvoiceSizeWithAttachment, ksef.MaxBatchArchiveSize)
	num("BATCH_SESSION_INVOICES", &sessionInvoices, 1, maxSessionInvoices)
	c.MaxInvoices, c.SessionInvoices = int(maxInvoices), int(sessionInvoices)
	if len(problems) > 0 {
		return config{}, fmt.Errorf("invalid configuration: %s", strings.Join(problems, "; "))
	}
	return c, nil
}
