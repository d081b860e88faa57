package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Exit statuses.
const (
	exitOK          = 0 // every invoice accepted (or the command succeeded)
	exitNotAccepted = 1 // some invoice was not accepted; each one's reason was printed
	exitUsage       = 2 // bad command line or missing credentials
	exitFailure     = 3 // login or any other failure
)

// procEnv is what a command takes from the process besides its arguments and output streams.
// main fills it with the real thing; tests inject fakes so that nothing sleeps and nothing
// reads the real environment.
type procEnv struct {
	getenv     func(key string) string
	now        func() time.Time
	wait       func(ctx context.Context, d time.Duration) error // returns early with ctx.Err()
	httpClient ksef.HTTPDoer                                    // nil: the ksef package's default
}

// cli is one invocation: output streams and process environment.
type cli struct {
	stdout, stderr io.Writer
	env            procEnv
}

// command is one subcommand. A command prints its own usage for -h and for bad flags; help X
// is X -h. Command groups (a future "cert self-signed") can dispatch with runCommand on a
// table of their own.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, x *cli, args []string) error
}

// commands is the table of ksef's subcommands, in the order help lists them.
func commands() []command {
	return []command{
		{name: "send", summary: "send invoices in one online session, wait for KSeF's verdict, save the UPOs", run: runSend},
	}
}

// errNotAccepted ends a command whose per-invoice results (already printed) include a failure.
var errNotAccepted = errors.New("not every invoice was accepted")

// usageError is a command-line problem. An empty msg means the usage text was printed already.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run executes the ksef command line args (without the program name) and returns the exit
// status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env procEnv) int {
	x := &cli{stdout: stdout, stderr: stderr, env: env}
	cmds := commands()
	if len(args) == 0 {
		printUsage(stderr, cmds)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			if c := lookup(cmds, args[1]); c != nil {
				return x.exit(c.name, c.run(ctx, x, []string{"-h"}))
			}
			fmt.Fprintf(stderr, "ksef help: unknown command %q\n\n", args[1])
			printUsage(stderr, cmds)
			return exitUsage
		}
		printUsage(stdout, cmds)
		return exitOK
	}
	c := lookup(cmds, args[0])
	if c == nil {
		fmt.Fprintf(stderr, "ksef: unknown command %q\n\n", args[0])
		printUsage(stderr, cmds)
		return exitUsage
	}
	return x.exit(c.name, c.run(ctx, x, args[1:]))
}

func lookup(cmds []command, name string) *command {
	for i := range cmds {
		if cmds[i].name == name {
			return &cmds[i]
		}
	}
	return nil
}

// exit reports err on stderr, once, and maps it to an exit status.
func (x *cli) exit(name string, err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		if ue.msg != "" {
			fmt.Fprintf(x.stderr, "ksef %s: %s\nRun 'ksef help %s' for usage.\n", name, ue.msg, name)
		}
		return exitUsage
	case errors.Is(err, errNotAccepted):
		return exitNotAccepted
	}
	fmt.Fprintf(x.stderr, "ksef %s: %v\n", name, err)
	return exitFailure
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprint(w, `Usage: ksef <command> [flags] [arguments]

ksef works with KSeF 2.0, Poland's national e-invoicing system (Krajowy System e-Faktur).

Commands:
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help     show this text, or a command's usage: ksef help <command>

Run 'ksef <command> -h' for a command's flags.

Exit status: 0 success; 1 some invoice was not accepted; 2 usage error; 3 login or other failure.
`)
}

// parseFlags parses args with fs, allowing flags after positional arguments ("a.xml --json");
// "--" ends the flags. On -h it prints usage to stdout and returns flag.ErrHelp; on a bad flag
// the flag package has explained the problem on stderr, and parseFlags adds the usage and
// returns a *usageError with nothing left to print.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, usage func(io.Writer)) ([]string, error) {
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil, flag.ErrHelp
		}
		if err != nil {
			fmt.Fprintln(stderr)
			usage(stderr)
			return nil, &usageError{}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// printFlags writes the flags of fs as "  --name VALUE   usage", with defaults.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if name != "" {
			left += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.usage)
	}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// oneLine joins texts (KSeF's status details) into one line.
func oneLine(texts []string) string {
	return strings.Join(strings.Fields(strings.Join(texts, "; ")), " ")
}
