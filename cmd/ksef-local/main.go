package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// defaultSample is the official sample invoice sent when no --invoice is given.
const defaultSample = "FA_3_Przyklad_1.xml"

// errRejected makes the command exit with status 1 after it has printed why.
var errRejected = errors.New("invoice not accepted")

// errUsage makes the command exit with status 2 after the usage has been printed.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "usage: ksef-local demo|bench [flags]   (ksef-local demo -h for the flags)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "demo":
		err = demo(ctx, args[1:], stdout, stderr)
	case "bench":
		err = bench(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "ksef-local: unknown command %q (want demo or bench)\n", args[0])
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errRejected):
		return 1
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "ksef-local: interrupted")
		return 130
	default:
		fmt.Fprintf(stderr, "ksef-local: %v\n", err)
		return 1
	}
}

// common are the flags shared by the commands.
type common struct {
	root, bin, runDir, emulatorConfig string
	noBuild, verbose                  bool
	waitOverride, timeout             time.Duration
	invoice, nip, auth                string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.root, "root", "", "module root (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "where to build the functions (<bin>/lambda/<name>/bootstrap) and the emulator (default <root>/bin, as make build-local)")
	fs.BoolVar(&c.noBuild, "no-build", false, "do not build; use the binaries in --bin")
	fs.StringVar(&c.runDir, "run-dir", "", "directory for the logs (default <root>/.local/runs/<time>)")
	fs.StringVar(&c.emulatorConfig, "emulator-config", "", "JSON config file for the KSeF emulator")
	fs.DurationVar(&c.waitOverride, "wait-override", 0, "replace the duration of every Wait state (0: real waits)")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "give up after this long")
	fs.BoolVar(&c.verbose, "v", false, "debug progress")
	fs.StringVar(&c.invoice, "invoice", "", "invoice XML file (default: the official sample "+defaultSample+")")
	fs.StringVar(&c.nip, "nip", localrun.DefaultNIP, "seller NIP (the KSeF context)")
	fs.StringVar(&c.auth, "auth", localrun.AuthToken, "KSeF login: token or xades (a self-signed company seal)")
}

// resolve fills the defaults that depend on the module root.
func (c *common) resolve() error {
	if c.root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if c.root, err = localrun.FindModuleRoot(wd); err != nil {
			return err
		}
	}
	if c.bin == "" {
		c.bin = filepath.Join(c.root, "bin")
	}
	if c.runDir == "" {
		c.runDir = filepath.Join(c.root, ".local", "runs", time.Now().Format("20060102-150405.000"))
	}
	return nil
}

func (c *common) logger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				a.Value = slog.StringValue(a.Value.Time().Format("15:04:05.000"))
			}
			return a
		},
	}))
}

// invoiceBytes returns the invoice to send and its file name.
func (c *common) invoiceBytes() ([]byte, string, error) {
	if c.invoice == "" {
		b, ok := official.SampleInvoices()[defaultSample]
		if !ok {
			return nil, "", fmt.Errorf("official sample %s is missing", defaultSample)
		}
		return b, defaultSample, nil
	}
	b, err := os.ReadFile(c.invoice)
	if err != nil {
		return nil, "", fmt.Errorf("read invoice: %w", err)
	}
	return b, filepath.Base(c.invoice), nil
}

// functions are the invoice state machine's functions; batchFunctions those of the batch runs.
var (
	functions      = []string{localrun.FunctionChallenge, localrun.FunctionSend, localrun.FunctionPoll, localrun.FunctionIngest}
	batchFunctions = []string{localrun.FunctionChallenge, localrun.FunctionPoll, localrun.FunctionBatch}
)

// build builds the functions fns and the emulator into c.bin (unless --no-build) and returns
// the stack options that use them (with batch.asl.json when fns has the batch function).
func (c *common) build(ctx context.Context, log *slog.Logger, fns []string) (localrun.Options, error) {
	opts := localrun.Options{
		Functions:      make(map[string]string, len(fns)),
		Definition:     filepath.Join(c.root, "statemachine.asl.json"),
		EmulatorBin:    filepath.Join(c.bin, "ksef-emulator"),
		EmulatorConfig: c.emulatorConfig,
		NIPs:           []string{c.nip},
		AuthMethod:     c.auth,
		LocalDir:       filepath.Join(c.root, "local"),
		RunDir:         c.runDir,
		WaitOverride:   c.waitOverride,
		Logger:         log,
	}
	for _, f := range fns {
		opts.Functions[f] = filepath.Join(c.bin, "lambda", f, "bootstrap")
	}
	if slices.Contains(fns, localrun.FunctionBatch) {
		opts.BatchDefinition = filepath.Join(c.root, "batch.asl.json")
	}
	var err error
	if opts.RIEBin, err = localrun.FindRIE(ctx, c.bin); err != nil {
		return opts, err
	}
	if c.noBuild {
		return opts, nil
	}
	start := time.Now()
	log.InfoContext(ctx, "building the functions and the emulator", "bin", c.bin)
	for _, f := range fns {
		if err := localrun.BuildFunction(ctx, c.root, "./functions/"+f, opts.Functions[f]); err != nil {
			return opts, err
		}
	}
	if err := localrun.BuildCommand(ctx, c.root, "./cmd/ksef-emulator", opts.EmulatorBin); err != nil {
		return opts, err
	}
	log.InfoContext(ctx, "built", "duration", time.Since(start).Round(time.Millisecond))
	return opts, nil
}
