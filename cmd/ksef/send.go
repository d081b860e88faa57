package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

const (
	defaultTimeout   = 15 * time.Minute
	statusFirstDelay = time.Second      // first wait between rounds of invoice status calls
	statusMaxDelay   = 10 * time.Second // cap of the doubling wait
	upoAttempts      = 5                // UPO downloads tried while KSeF says it does not exist yet
	cleanupTimeout   = 20 * time.Second // for closing the session and logging out, even after Ctrl-C
	userAgent        = "ksef-serverless-cli"
)

// sendOptions are the parsed flags and arguments of ksef send.
type sendOptions struct {
	env               ksef.Environment
	baseURL           string
	nip               string
	certFile, keyFile string
	upoDir            string
	json              bool
	acceptDuplicates  bool
	timeout           time.Duration
	verbose           bool
	files             []string
}

func sendUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef send [--env test|demo|prod | --base-url URL] --nip NIP [--cert FILE --key FILE]
                 [--upo-dir DIR] [--json] [--accept-duplicates] [--timeout D] [--verbose] FILE...

Send FA(3) invoices to KSeF in one online session, wait for KSeF's verdict on each, and save
each accepted invoice's UPO (official receipt) as DIR/<KSeF number>.xml.

Every file is checked first (encoding, XML, seller NIP equal to --nip, issue date not in the
future, size); a file that fails is reported and not sent. Then ksef logs in to the context of
--nip with the KSeF token in the environment variable KSEF_TOKEN or, given --cert and --key,
with an XAdES signature; it logs out again at the end, also after Ctrl-C.

One line per file on stdout:
  FILE: KSeF number NUMBER (UPO: PATH)
  FILE: rejected CODE DESCRIPTION: DETAILS
  FILE: not sent: REASON
  FILE: status unknown (reference REF[, last status CODE DESCRIPTION]): REASON
With --json, one JSON object per file instead, with the fields file, accepted, referenceNumber,
ksefNumber, statusCode, statusDescription, statusDetails, upoPath, sessionReferenceNumber,
invoiceNumber, originalKsefNumber, originalSessionReferenceNumber and error. Progress goes to
stderr.

Exit status: 0 every invoice accepted; 1 some invoice not accepted; 2 usage error or no
credentials; 3 login or other failure (interrupted, timed out, UPO not saved).

Flags:
`)
		printFlags(w, fs)
	}
}

func parseSend(x *cli, args []string) (*sendOptions, error) {
	fs := flag.NewFlagSet("ksef send", flag.ContinueOnError)
	o := &sendOptions{}
	envName := fs.String("env", string(ksef.Test), "`NAME` of the KSeF environment: test, demo or prod")
	fs.StringVar(&o.baseURL, "base-url", "", "API base `URL` ending in /v2 (a local emulator, say), instead of --env")
	fs.StringVar(&o.nip, "nip", "", "`NIP` of the context to log in to; it must be every invoice's seller NIP")
	fs.StringVar(&o.certFile, "cert", "", "certificate `FILE` (PEM) for an XAdES login instead of KSEF_TOKEN")
	fs.StringVar(&o.keyFile, "key", "", "private key `FILE` of --cert (PEM, unencrypted)")
	fs.StringVar(&o.upoDir, "upo-dir", ".", "`DIR` for the UPOs, created if missing")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per file (JSON Lines) instead of text")
	fs.BoolVar(&o.acceptDuplicates, "accept-duplicates", false, "count an invoice KSeF already has (status 440) as accepted")
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "give up after `D`: login, sending and waiting together")
	fs.BoolVar(&o.verbose, "verbose", false, "debug log of every HTTP request on stderr (tokens are never logged)")
	files, err := parseFlags(fs, args, x.stdout, x.stderr, sendUsage(fs))
	if err != nil {
		return nil, err
	}
	o.files = files
	switch {
	case len(o.files) == 0:
		return nil, usagef("no invoice files given")
	case o.nip == "":
		return nil, usagef("--nip is required")
	case !ksef.ValidNIP(o.nip):
		return nil, usagef("--nip %q is not a NIP (10 digits)", o.nip)
	case o.timeout <= 0:
		return nil, usagef("--timeout must be positive")
	case o.upoDir == "":
		return nil, usagef("--upo-dir must not be empty")
	case o.baseURL != "" && flagSet(fs, "env"):
		return nil, usagef("give --env or --base-url, not both")
	}
	if o.env, err = ksef.ParseEnvironment(*envName); err != nil {
		return nil, usagef("--env: %s", plain(err))
	}
	return o, nil
}

// runSend is ksef send.
func runSend(ctx context.Context, x *cli, args []string) error {
	o, err := parseSend(x, args)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(x.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tokens := &tokenSource{now: x.env.now}
	opts := []ksef.Option{
		ksef.WithAccessToken(tokens),
		ksef.WithLogger(logger),
		ksef.WithClock(x.env.now),
		ksef.WithWait(x.env.wait),
		ksef.WithUserAgent(userAgent),
		ksef.WithEnvironment(o.env),
	}
	if o.baseURL != "" {
		opts = append(opts, ksef.WithBaseURL(o.baseURL))
	}
	if x.env.httpClient != nil {
		opts = append(opts, ksef.WithHTTPClient(x.env.httpClient))
	}
	client, err := ksef.NewClient(opts...)
	if err != nil {
		return usagef("%s", plain(err))
	}
	tokens.client = client
	cred, err := loadCredentials(x.env.getenv, o.certFile, o.keyFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.upoDir, 0o755); err != nil {
		return fmt.Errorf("create --upo-dir: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	s := &sender{
		o:      o,
		client: client,
		tokens: tokens,
		pace:   &pacer{now: x.env.now, wait: x.env.wait, deadline: x.env.now().Add(o.timeout)},
		log:    logger,
		stderr: x.stderr,
		out:    &reporter{w: x.stdout, json: o.json},
	}
	return s.run(ctx, cred)
}

// sender runs one ksef send.
type sender struct {
	o      *sendOptions
	client *ksef.Client
	tokens *tokenSource
	pace   *pacer
	log    *slog.Logger
	stderr io.Writer
	out    *reporter

	accepted    int // results reported as accepted
	upoFailures int // accepted invoices whose UPO could not be saved
}

// job is one input file on its way through the command.
type job struct {
	res  result
	info *ksef.InvoiceInfo // nil if the file failed the checks
	done bool              // res has been reported
}

func (s *sender) progressf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "ksef: "+format+"\n", args...)
}

func (s *sender) run(ctx context.Context, cred *credentials) error {
	jobs := s.inspect()
	ready := 0
	for _, j := range jobs {
		if !j.done {
			ready++
		}
	}
	s.progressf("checked %s: %d to send, %d invalid", plural(len(jobs), "file"), ready, len(jobs)-ready)
	var runErr error
	if ready > 0 {
		if s.o.baseURL != "" {
			s.progressf("KSeF API at %s", s.client.BaseURL())
		} else {
			s.progressf("KSeF %s environment (%s)", s.o.env, s.client.BaseURL())
		}
		s.progressf("logging in to context NIP %s (%s)", s.o.nip, cred.method())
		var tokens *ksef.AuthTokens
		tokens, runErr = login(ctx, s.client, s.o.nip, cred, s.pace, s.progressf)
		if runErr != nil {
			runErr = fmt.Errorf("log in: %w", runErr)
			s.abandon(jobs, brief(runErr, "login failed"))
		} else {
			s.tokens.set(tokens)
			runErr = s.inSession(ctx, jobs)
			s.logout(ctx)
			if runErr != nil {
				s.abandon(jobs, brief(runErr, "stopped after an earlier error"))
			}
		}
	}
	s.progressf("%d of %s accepted", s.accepted, plural(len(jobs), "invoice"))
	switch {
	case errors.Is(runErr, context.Canceled):
		return errors.New("interrupted")
	case errors.Is(runErr, context.DeadlineExceeded), errors.Is(runErr, errTimedOut):
		return fmt.Errorf("gave up after --timeout %v: %w", s.o.timeout, runErr)
	case runErr != nil:
		return runErr
	case s.out.err != nil:
		return fmt.Errorf("write results: %w", s.out.err)
	case s.upoFailures > 0:
		return fmt.Errorf("%s could not be saved", plural(s.upoFailures, "UPO"))
	case s.accepted < len(jobs):
		return errNotAccepted
	}
	return nil
}

// brief is the reason given to the files an error left without a result.
func brief(err error, otherwise string) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errTimedOut):
		return "timed out"
	}
	return otherwise
}

// inspect reads and checks every file, reporting at once those that fail.
func (s *sender) inspect() []*job {
	jobs := make([]*job, 0, len(s.o.files))
	for _, f := range s.o.files {
		j := &job{res: result{File: f}}
		jobs = append(jobs, j)
		data, err := readInvoice(f)
		if err == nil {
			j.info, err = ksef.InspectInvoice(data, ksef.InspectOptions{ContextNIP: s.o.nip, Now: s.pace.now()})
		}
		if err != nil {
			j.info = nil
			j.res.Error = plain(err)
			s.finish(j)
			continue
		}
		j.res.InvoiceNumber = j.info.Number
	}
	return jobs
}

// readInvoice reads a file, at most one byte more than the largest invoice KSeF takes, so that
// InspectInvoice can report a file that is too large without it being read whole.
func readInvoice(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, ksef.DefaultMaxInvoiceSizeWithAttachment+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// inSession opens an online session, sends the checked files, waits for their outcome and
// closes the session, also when sending or waiting failed.
func (s *sender) inSession(ctx context.Context, jobs []*job) error {
	session, err := s.client.OpenOnlineSession(ctx, ksef.FormCodeFA3())
	if err != nil {
		return fmt.Errorf("open online session: %w", err)
	}
	s.progressf("opened online session %s", session.ReferenceNumber)
	for _, j := range jobs {
		if !j.done {
			j.res.SessionReferenceNumber = session.ReferenceNumber
		}
	}
	err = s.sendAll(ctx, session, jobs)
	if ctx.Err() == nil {
		// Invoices already sent are processed whatever went wrong later: wait for them.
		err = firstErr(err, s.poll(ctx, session, jobs))
	}
	s.closeSession(ctx, session)
	return err
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sendAll sends the checked files. An error that concerns one invoice is that invoice's result;
// any other error (session, token, network, interruption) stops the sending and is returned.
func (s *sender) sendAll(ctx context.Context, session *ksef.SessionHandle, jobs []*job) error {
	for _, j := range jobs {
		if j.done {
			continue
		}
		data, err := readInvoice(j.res.File)
		if err == nil && hashOf(data) != j.info.Hash {
			err = errors.New("the file changed after it was checked")
		}
		if err != nil {
			j.res.Error = plain(err)
			s.finish(j)
			continue
		}
		sent, err := s.client.SendInvoice(ctx, session, data, nil)
		if err != nil {
			j.res.Error = plain(err)
			if !invoiceError(err) {
				j.res.Error = brief(err, j.res.Error)
				if mayHaveArrived(err) {
					j.res.Error += " (KSeF may have received it: check before sending it again)"
				}
				s.finish(j)
				return fmt.Errorf("send %s: %w", j.res.File, err)
			}
			s.finish(j)
			continue
		}
		j.res.ReferenceNumber = sent.ReferenceNumber
		s.progressf("sent %s (reference %s)", j.res.File, sent.ReferenceNumber)
	}
	return nil
}

// invoiceError reports whether a failed send concerns that invoice alone (KSeF refused its
// content), so that the others may still be sent.
func invoiceError(err error) bool {
	var ae *ksef.APIError
	if !errors.As(err, &ae) || ae.StatusCode < 400 || ae.StatusCode >= 500 {
		return false
	}
	switch ae.StatusCode {
	case 401, 403, 429:
		return false
	}
	return !ae.HasCode(ksef.CodeSessionNotFound) && !ae.HasCode(ksef.CodeSessionStatus) && !ae.HasCode(ksef.CodeInvoiceLimit)
}

// mayHaveArrived reports whether a failed send leaves open whether KSeF got the invoice: a 5xx
// answer, or a network failure after the request may have left (the client repeats a send only
// when it surely did not).
func mayHaveArrived(err error) bool {
	var ae *ksef.APIError
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// poll asks for the status of every sent invoice in rounds, waiting 1 s, 2 s, 4 s ... at most
// statusMaxDelay between rounds, until each is final or the deadline would pass.
func (s *sender) poll(ctx context.Context, session *ksef.SessionHandle, jobs []*job) error {
	var pending []*job
	for _, j := range jobs {
		if !j.done && j.res.ReferenceNumber != "" {
			pending = append(pending, j)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	s.progressf("waiting for KSeF to process %s", plural(len(pending), "invoice"))
	delay := statusFirstDelay
	for {
		wait := delay
		var next []*job
		for i, j := range pending {
			st, err := s.client.InvoiceStatus(ctx, session.ReferenceNumber, j.res.ReferenceNumber)
			var ae *ksef.APIError
			if err != nil && ctx.Err() == nil && errors.As(err, &ae) && ae.Temporary() {
				// Rate limited or KSeF busy even after the client's retries: try again next round.
				s.log.WarnContext(ctx, "invoice status unavailable", "referenceNumber", j.res.ReferenceNumber, "err", err)
				wait = max(wait, ae.RetryAfter)
				next = append(next, pending[i:]...)
				break
			}
			if err != nil {
				return fmt.Errorf("status of %s (reference %s): %w", j.res.File, j.res.ReferenceNumber, err)
			}
			s.log.DebugContext(ctx, "invoice status", "referenceNumber", j.res.ReferenceNumber, "statusCode", st.Status.Code)
			if st.Status.Code < 200 {
				j.res.StatusCode, j.res.StatusDescription = st.Status.Code, st.Status.Description
				next = append(next, j)
				continue
			}
			s.settle(ctx, session, j, st)
		}
		pending = next
		if len(pending) == 0 {
			return nil
		}
		if err := s.pace.sleep(ctx, wait); err != nil {
			return fmt.Errorf("wait for the status of %s: %w", plural(len(pending), "invoice"), err)
		}
		delay = min(2*delay, statusMaxDelay)
	}
}

// settle records the final status of an invoice, saves its UPO if it was accepted, and reports
// it.
func (s *sender) settle(ctx context.Context, session *ksef.SessionHandle, j *job, st *ksef.InvoiceStatus) {
	r := &j.res
	r.StatusCode = st.Status.Code
	r.StatusDescription = st.Status.Description
	r.StatusDetails = st.Status.Details
	r.KSeFNumber = st.KSeFNumber
	switch st.Status.Code {
	case 200:
		r.Accepted = true
		upo, err := s.fetchUPO(ctx, session.ReferenceNumber, st)
		if err == nil {
			r.UPOPath, err = s.saveUPO(st.KSeFNumber, upo)
		}
		if err != nil {
			r.Error = "UPO not saved: " + plain(err)
			s.upoFailures++
		}
	case 440:
		r.OriginalKSeFNumber = st.Status.Extensions["originalKsefNumber"]
		r.OriginalSessionReferenceNumber = st.Status.Extensions["originalSessionReferenceNumber"]
		if !s.o.acceptDuplicates || r.OriginalKSeFNumber == "" {
			break
		}
		r.Accepted = true
		r.KSeFNumber = r.OriginalKSeFNumber
		if r.OriginalSessionReferenceNumber == "" {
			break
		}
		// Best effort: the original session may belong to someone else in the context.
		doc, err := s.client.InvoiceUPOByKSeFNumber(ctx, r.OriginalSessionReferenceNumber, r.OriginalKSeFNumber)
		if err == nil {
			r.UPOPath, err = s.saveUPO(r.OriginalKSeFNumber, doc.Content)
		}
		if err != nil {
			r.Error = "UPO of the original not saved: " + plain(err)
		}
	}
	s.finish(j)
}

// fetchUPO downloads the UPO of an accepted invoice: by the pre-signed link in its status or,
// failing that, through the API, repeating while KSeF says the UPO does not exist yet.
func (s *sender) fetchUPO(ctx context.Context, sessionRef string, st *ksef.InvoiceStatus) ([]byte, error) {
	if st.UPODownloadURL != "" {
		doc, err := s.client.Download(ctx, st.UPODownloadURL)
		if err == nil {
			return doc.Content, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		s.log.WarnContext(ctx, "UPO link failed, trying the API", "referenceNumber", st.ReferenceNumber, "err", err)
	}
	delay := statusFirstDelay
	for attempt := 1; ; attempt++ {
		doc, err := s.client.InvoiceUPO(ctx, sessionRef, st.ReferenceNumber)
		if err == nil {
			return doc.Content, nil
		}
		if !errors.Is(err, ksef.ErrNotFound) || attempt == upoAttempts {
			return nil, err
		}
		if err := s.pace.sleep(ctx, delay); err != nil {
			return nil, err
		}
		delay = min(2*delay, statusMaxDelay)
	}
}

// saveUPO writes the UPO of the invoice with KSeF number n to <upo-dir>/<n>.xml. The number
// comes from KSeF and becomes a file name, so it must parse as one first.
func (s *sender) saveUPO(n string, upo []byte) (string, error) {
	if _, err := ksef.ParseKSeFNumber(n); err != nil {
		return "", fmt.Errorf("KSeF number %q: %w", n, err)
	}
	if !bytes.Contains(upo, []byte(n)) {
		return "", fmt.Errorf("the UPO received does not name KSeF number %s", n)
	}
	return writeFileAtomic(s.o.upoDir, n+".xml", upo)
}

// finish reports a job's result.
func (s *sender) finish(j *job) {
	j.done = true
	if j.res.Accepted {
		s.accepted++
	}
	s.out.report(&j.res)
}

// abandon reports every job still without a result: not sent, or sent with no final status.
func (s *sender) abandon(jobs []*job, reason string) {
	for _, j := range jobs {
		if !j.done {
			j.res.Error = reason
			s.finish(j)
		}
	}
}

// closeSession closes the online session, with a context of its own so that it happens after
// Ctrl-C or --timeout too.
func (s *sender) closeSession(ctx context.Context, session *ksef.SessionHandle) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.client.CloseOnlineSession(ctx, session.ReferenceNumber); err != nil {
		s.progressf("warning: could not close online session %s: %s", session.ReferenceNumber, plain(err))
		return
	}
	s.progressf("closed online session %s", session.ReferenceNumber)
}

// logout revokes the authentication session, so that its refresh token stops working.
func (s *sender) logout(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.client.RevokeCurrentSession(ctx, s.tokens.refreshToken()); err != nil {
		s.progressf("warning: could not log out: %s", plain(err))
		return
	}
	s.progressf("logged out")
}

// plural returns "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// plain is an error's text without the "ksef: " prefix of the client package, for people.
func plain(err error) string {
	return strings.TrimPrefix(err.Error(), "ksef: ")
}
