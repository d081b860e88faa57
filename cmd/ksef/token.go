package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// defaultTokenDescription is the description of tokens generated for the pipeline.
const defaultTokenDescription = "ksef-serverless pipeline"

func tokenGenerateUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef token generate [--env test|demo|prod | --base-url URL] --nip NIP
                  (--cert FILE --key FILE | --p12 FILE) [--permission P[,P...]] [--description TEXT]
                  [--print] [--secret-id SECRET] [--kms-key-id KEY] [--timeout D] [--verbose]

Generate a KSeF token in the context --nip with the given permissions (default InvoiceWrite,
what the pipeline needs), wait until KSeF activates it, and store it in the NIP's credentials
secret in AWS Secrets Manager (authMethod "token"; the secret's other fields are kept). KSeF
shows a token only once: with --print it goes to stdout instead, and nothing is stored.

KSeF issues tokens only after a login with a signature, so --cert and --key or --p12 are
required; a token can hold only permissions its author has. The credentials secret is read
before the token is generated, so that a secret that cannot be written fails the command
before a token exists; if storing fails after all, the token is revoked again.

KSeF tokens are a legal means of authentication until 2026-12-31; KSeF certificates (ksef cert
enroll) are the lasting alternative.

Permissions: InvoiceWrite, InvoiceRead, CredentialsManage, CredentialsRead, Introspection,
SubunitManage, EnforcementOperations.

Flags:
`)
		printFlags(w, fs)
	}
}

// runTokenGenerate is ksef token generate.
func runTokenGenerate(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef token generate", flag.ContinueOnError)
	var l loginFlags
	var sf storeFlags
	l.register(fs)
	sf.register(fs)
	perms := &permissionList{allowed: personPermissions}
	fs.Var(perms, "permission", "`P[,P...]` the token carries (repeatable; default InvoiceWrite)")
	description := fs.String("description", defaultTokenDescription, "`TEXT` describing the token (5-256 characters)")
	printToken := fs.Bool("print", false, "print the token on stdout instead of storing it")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, tokenGenerateUsage(fs))
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case *printToken && (sf.secretID != "" || sf.kmsKeyID != ""):
		return usagef("--print stores nothing: drop --secret-id and --kms-key-id")
	}
	if err := checkDescription("--description", *description); err != nil {
		return err
	}
	if err := l.check(fs); err != nil {
		return err
	}
	if len(perms.list) == 0 {
		perms.list = []ksef.Permission{ksef.PermissionInvoiceWrite}
	}
	var store *credStore
	if !*printToken {
		if store, err = x.openStore(ctx, &sf, l.nip, false); err != nil {
			return err
		}
	}
	return x.loggedIn(ctx, &l, true, func(ctx context.Context, s *session) error {
		gen, err := s.client.GenerateToken(ctx, ksef.TokenRequest{Permissions: perms.list, Description: *description})
		if err != nil {
			return fmt.Errorf("generate token: %w", err)
		}
		ref := gen.ReferenceNumber
		x.progressf("KSeF generated token %s with %s", ref, perms)
		info, err := s.waitToken(ctx, ref, func(st ksef.TokenState) bool { return st != ksef.TokenPending })
		switch {
		case err != nil && !*printToken:
			// The token may still become active: keep it rather than lose the only copy.
			x.progressf("warning: token %s is not active yet (%s); storing it anyway: check it with ksef token status %s", ref, plain(err), ref)
		case err != nil:
			x.progressf("warning: token %s is not active yet (%s): check it with ksef token status %s", ref, plain(err), ref)
		case info.Status != ksef.TokenActive:
			return fmt.Errorf("token %s is %s, not active: %s", ref, info.Status, oneLine(info.StatusDetails))
		default:
			x.progressf("token %s is active", ref)
		}
		if *printToken {
			_, err := fmt.Fprintln(x.stdout, gen.Token.Reveal())
			return err
		}
		fmt.Fprintf(x.stdout, "KSeF token %s, permissions %s, context NIP %s\n", ref, perms, l.nip)
		return store.saveNew(ctx, credentialUpdate{env: l.api.env, baseURL: l.api.baseURL, apply: func(c *secrets.Credentials) {
			c.AuthMethod = secrets.AuthToken
			c.KSeFToken = gen.Token
		}}, "token "+ref, func(ctx context.Context) error { return s.client.RevokeToken(ctx, ref) })
	})
}

// waitToken polls a token's status until done says its state is the one awaited.
func (s *session) waitToken(ctx context.Context, ref string, done func(ksef.TokenState) bool) (*ksef.TokenInfo, error) {
	var info *ksef.TokenInfo
	err := s.poll(ctx, "token "+ref, func(ctx context.Context) (bool, string, error) {
		var err error
		if info, err = s.client.TokenStatus(ctx, ref); err != nil {
			return false, "", fmt.Errorf("status of token %s: %w", ref, err)
		}
		return done(info.Status), string(info.Status), nil
	})
	return info, err
}

func tokenStatusUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef token status [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--json] [--timeout D] [--verbose] REFERENCE

Show a KSeF token of the context --nip by its reference number (20251010-EC-...): status
(Pending, Active, Revoking, Revoked, Failed), permissions, author, description, when it was
created and last used.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// tokenRow is a KSeF token as ksef token status and list print it.
type tokenRow struct {
	ReferenceNumber string   `json:"referenceNumber"`
	Status          string   `json:"status"`
	StatusDetails   []string `json:"statusDetails,omitempty"`
	Permissions     []string `json:"permissions"`
	Author          string   `json:"author"`
	Context         string   `json:"context"`
	Description     string   `json:"description"`
	Created         string   `json:"dateCreated"`
	LastUsed        string   `json:"lastUseDate,omitempty"`
}

func tokenRowOf(t *ksef.TokenInfo) tokenRow {
	r := tokenRow{
		ReferenceNumber: t.ReferenceNumber, Status: string(t.Status), StatusDetails: t.StatusDetails,
		Author: subjectText(&t.Author), Context: string(t.Context.Type) + " " + t.Context.Value,
		Description: t.Description, Created: dateText(t.DateCreated), Permissions: []string{},
	}
	for _, p := range t.Permissions {
		r.Permissions = append(r.Permissions, string(p))
	}
	if !t.LastUseDate.IsZero() {
		r.LastUsed = dateText(t.LastUseDate)
	}
	return r
}

// runTokenStatus is ksef token status.
func runTokenStatus(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef token status", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	jsonOut := fs.Bool("json", false, "print a JSON object")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, tokenStatusUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give the reference number of one token")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	ref := rest[0]
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		t, err := s.client.TokenStatus(ctx, ref)
		if err != nil {
			return fmt.Errorf("status of token %s: %w", ref, err)
		}
		r := tokenRowOf(t)
		if *jsonOut {
			return writeJSON(x.stdout, r)
		}
		fmt.Fprintf(x.stdout, "KSeF token %s\n", r.ReferenceNumber)
		fmt.Fprintf(x.stdout, "  status:       %s\n", r.Status)
		if len(r.StatusDetails) > 0 {
			fmt.Fprintf(x.stdout, "  details:      %s\n", oneLine(r.StatusDetails))
		}
		fmt.Fprintf(x.stdout, "  permissions:  %s\n", strings.Join(r.Permissions, ", "))
		fmt.Fprintf(x.stdout, "  context:      %s\n", r.Context)
		fmt.Fprintf(x.stdout, "  author:       %s\n", r.Author)
		fmt.Fprintf(x.stdout, "  description:  %s\n", r.Description)
		fmt.Fprintf(x.stdout, "  created:      %s\n", r.Created)
		if r.LastUsed != "" {
			fmt.Fprintf(x.stdout, "  last used:    %s\n", r.LastUsed)
		}
		return nil
	})
}

func tokenListUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef token list [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--status S[,S...]] [--json]
                  [--timeout D] [--verbose]

List the KSeF tokens of the context --nip that the logged-in subject may see (all of them with
CredentialsManage or CredentialsRead, else the ones it generated), newest first. With --json,
one JSON object per token.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// tokenStates are the token states ksef token list filters by.
var tokenStates = []ksef.TokenState{ksef.TokenPending, ksef.TokenActive, ksef.TokenRevoking, ksef.TokenRevoked, ksef.TokenFailed}

// runTokenList is ksef token list.
func runTokenList(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef token list", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	status := fs.String("status", "", "only tokens in the states `S[,S...]`: Pending, Active, Revoking, Revoked, Failed")
	jsonOut := fs.Bool("json", false, "print one JSON object per token")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, tokenListUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	var opts ksef.TokenListOptions
	if *status != "" {
		for name := range strings.SplitSeq(*status, ",") {
			i := slices.IndexFunc(tokenStates, func(s ksef.TokenState) bool { return strings.EqualFold(string(s), strings.TrimSpace(name)) })
			if i < 0 {
				return usagef("--status: unknown token state %q", name)
			}
			opts.Statuses = append(opts.Statuses, tokenStates[i])
		}
	}
	if err := l.check(fs); err != nil {
		return err
	}
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		var rows []tokenRow
		opts.PageSize = 100
		for {
			page, err := s.client.Tokens(ctx, &opts)
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			for i := range page.Tokens {
				rows = append(rows, tokenRowOf(&page.Tokens[i]))
			}
			if page.ContinuationToken == "" || page.ContinuationToken == opts.ContinuationToken {
				break
			}
			opts.ContinuationToken = page.ContinuationToken
		}
		if *jsonOut {
			return writeJSONLines(x.stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(x.stdout, "No tokens.")
			return nil
		}
		t := newTable(x.stdout, "REFERENCE", "STATUS", "CREATED", "LAST USED", "AUTHOR", "PERMISSIONS", "DESCRIPTION")
		for _, r := range rows {
			last := r.LastUsed
			if last == "" {
				last = "-"
			}
			t.row(r.ReferenceNumber, r.Status, r.Created, last, r.Author, strings.Join(r.Permissions, ","), r.Description)
		}
		return t.flush()
	})
}

func tokenRevokeUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef token revoke [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--timeout D] [--verbose] REFERENCE

Revoke a KSeF token of the context --nip: it stops working at once. ksef waits until KSeF
reports it Revoked. With CredentialsManage any token of the context can be revoked; otherwise
only tokens the logged-in subject generated. A pipeline whose credentials secret holds the
token can no longer log in: store other credentials first (ksef secrets put, ksef cert enroll).

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// runTokenRevoke is ksef token revoke.
func runTokenRevoke(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef token revoke", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, tokenRevokeUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give the reference number of one token")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	ref := rest[0]
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		if err := s.client.RevokeToken(ctx, ref); err != nil {
			return fmt.Errorf("revoke token %s: %w", ref, err)
		}
		x.progressf("KSeF is revoking token %s", ref)
		info, err := s.waitToken(ctx, ref, func(st ksef.TokenState) bool { return st != ksef.TokenRevoking })
		if err != nil {
			return err
		}
		if info.Status != ksef.TokenRevoked {
			return fmt.Errorf("token %s is %s after revocation: %s", ref, info.Status, oneLine(info.StatusDetails))
		}
		fmt.Fprintf(x.stdout, "Revoked KSeF token %s (%s)\n", ref, info.Description)
		return nil
	})
}
