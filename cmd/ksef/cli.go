package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

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
	// awsConfig loads the AWS SDK configuration for Secrets Manager; nil: the SDK's default
	// chain (environment, shared files, AWS_ENDPOINT_URL...), see loadAWSConfig.
	awsConfig func(ctx context.Context) (aws.Config, error)
}

// cli is one invocation: output streams and process environment.
type cli struct {
	stdout, stderr io.Writer
	env            procEnv
}

// command is one subcommand, or a group of them ("cert" holds "cert enroll"...). A command
// prints its own usage for -h and for bad flags; help X is X -h, help GROUP lists the group.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, x *cli, args []string) error // nil for a group
	sub     []command                                              // a group's commands
}

// commands is the table of ksef's subcommands, in the order help lists them.
func commands() []command {
	return []command{
		{name: "send", summary: "send invoices in one online session, wait for KSeF's verdict, save the UPOs", run: runSend},
		{name: "login", summary: "log in to KSeF (and out again) to check credentials", run: runLogin},
		{name: "cert", summary: "certificates", sub: []command{
			{name: "self-signed", summary: "make a self-signed test certificate and key (KSeF TEST only)", run: runCertSelfSigned},
			{name: "enroll", summary: "obtain a KSeF certificate and store it with its key in Secrets Manager", run: runCertEnroll},
			{name: "list", summary: "list the KSeF certificates of the logged-in subject", run: runCertList},
			{name: "revoke", summary: "revoke a KSeF certificate", run: runCertRevoke},
		}},
		{name: "auth", summary: "authentication documents", sub: []command{
			{name: "sign-request", summary: "write a signed AuthTokenRequest (XAdES) for an outside verifier", run: runSignRequest},
		}},
		{name: "permissions", summary: "grant, list and revoke permissions in a context", sub: []command{
			{name: "grant", summary: "grant permissions to a person or an entity and wait for the operation", run: runPermissionsGrant},
			{name: "list", summary: "list the permissions granted in the context", run: runPermissionsList},
			{name: "revoke", summary: "revoke a granted permission and wait for the operation", run: runPermissionsRevoke},
		}},
		{name: "token", summary: "KSeF tokens", sub: []command{
			{name: "generate", summary: "generate a KSeF token and store it in Secrets Manager", run: runTokenGenerate},
			{name: "status", summary: "show a KSeF token's status", run: runTokenStatus},
			{name: "list", summary: "list the KSeF tokens of the context", run: runTokenList},
			{name: "revoke", summary: "revoke a KSeF token", run: runTokenRevoke},
		}},
		{name: "secrets", summary: "the credentials secret the pipeline reads", sub: []command{
			{name: "put", summary: "write a KSeF token or a certificate and key into the credentials secret", run: runSecretsPut},
			{name: "show", summary: "show the credentials secret, secrets masked", run: runSecretsShow},
		}},
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
			c, name, rest := resolve(cmds, args[1:])
			switch {
			case c == nil:
				fmt.Fprintf(stderr, "ksef help: unknown command %q\n\n", strings.Join(args[1:], " "))
				printUsage(stderr, cmds)
				return exitUsage
			case c.sub != nil && len(rest) > 0:
				fmt.Fprintf(stderr, "ksef help: unknown command %q\n\n", name+" "+rest[0])
				printGroupUsage(stderr, name, c.sub)
				return exitUsage
			case c.sub != nil:
				printGroupUsage(stdout, name, c.sub)
				return exitOK
			}
			return x.exit(name, c.run(ctx, x, []string{"-h"}))
		}
		printUsage(stdout, cmds)
		return exitOK
	}
	c, name, rest := resolve(cmds, args)
	switch {
	case c == nil:
		fmt.Fprintf(stderr, "ksef: unknown command %q\n\n", args[0])
		printUsage(stderr, cmds)
		return exitUsage
	case c.sub != nil && len(rest) > 0 && isHelp(rest[0]):
		printGroupUsage(stdout, name, c.sub)
		return exitOK
	case c.sub != nil:
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "ksef %s: unknown command %q\n\n", name, rest[0])
		}
		printGroupUsage(stderr, name, c.sub)
		return exitUsage
	}
	return x.exit(name, c.run(ctx, x, rest))
}

// resolve finds the command named by the first one or two words of args: a command, or a group
// with its subcommand. It returns the command (nil if unknown), its full name ("cert enroll")
// and the remaining arguments. For a group without a known subcommand it returns the group.
func resolve(cmds []command, args []string) (c *command, name string, rest []string) {
	c = lookup(cmds, args[0])
	if c == nil {
		return nil, "", nil
	}
	name, rest = c.name, args[1:]
	if c.sub != nil && len(rest) > 0 {
		if s := lookup(c.sub, rest[0]); s != nil {
			return s, name + " " + s.name, rest[1:]
		}
	}
	return c, name, rest
}

func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
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
	var onboarding []string
	width := 0
	for _, c := range cmds {
		if c.sub == nil {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
			continue
		}
		for _, s := range c.sub {
			name := c.name + " " + s.name
			onboarding = append(onboarding, name, s.summary)
			width = max(width, len(name))
		}
	}
	fmt.Fprint(w, `  help     show this text, or a command's usage: ksef help <command>

Onboarding: credentials for the pipeline, stored in AWS Secrets Manager:
`)
	for i := 0; i < len(onboarding); i += 2 {
		fmt.Fprintf(w, "  %-*s  %s\n", width, onboarding[i], onboarding[i+1])
	}
	fmt.Fprint(w, `
Run 'ksef <command> -h' for a command's flags.

Exit status: 0 success; 1 some invoice was not accepted; 2 usage error; 3 login or other failure.
`)
}

// printGroupUsage lists the commands of a group.
func printGroupUsage(w io.Writer, group string, sub []command) {
	fmt.Fprintf(w, "Usage: ksef %s <command> [flags] [arguments]\n\nCommands:\n", group)
	width := 0
	for _, s := range sub {
		width = max(width, len(s.name))
	}
	for _, s := range sub {
		fmt.Fprintf(w, "  %-*s  %s\n", width, s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun 'ksef %s <command> -h' for a command's flags.\n", group)
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
