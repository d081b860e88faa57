package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// permissionList is a flag holding KSeF permissions, given comma-separated or by repeating the
// flag.
type permissionList struct {
	allowed []ksef.Permission
	list    []ksef.Permission
}

func (p *permissionList) String() string {
	if p == nil {
		return ""
	}
	names := make([]string, len(p.list))
	for i, x := range p.list {
		names[i] = string(x)
	}
	return strings.Join(names, ",")
}

// Set adds the comma-separated permissions of s, matched without regard to case.
func (p *permissionList) Set(s string) error {
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(p.allowed, func(a ksef.Permission) bool { return strings.EqualFold(string(a), name) })
		if i < 0 {
			return fmt.Errorf("unknown permission %q (want %s)", name, joinPermissions(p.allowed))
		}
		if !slices.Contains(p.list, p.allowed[i]) {
			p.list = append(p.list, p.allowed[i])
		}
	}
	return nil
}

func joinPermissions(ps []ksef.Permission) string {
	names := make([]string, len(ps))
	for i, x := range ps {
		names[i] = string(x)
	}
	return strings.Join(names, ", ")
}

// Permissions that can be granted to persons and put in KSeF tokens, and to entities.
var (
	personPermissions = []ksef.Permission{
		ksef.PermissionInvoiceWrite, ksef.PermissionInvoiceRead, ksef.PermissionCredentialsManage,
		ksef.PermissionCredentialsRead, ksef.PermissionIntrospection, ksef.PermissionSubunitManage,
		ksef.PermissionEnforcementOperations,
	}
	entityPermissions = []ksef.Permission{ksef.PermissionInvoiceWrite, ksef.PermissionInvoiceRead}
)

// checkDescription checks the 5-256 characters KSeF wants of a description.
func checkDescription(flagName, d string) error {
	if n := utf8.RuneCountInString(d); n < 5 || n > 256 {
		return usagef("%s must have 5 to 256 characters", flagName)
	}
	return nil
}

func grantUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef permissions grant [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE]
                  (--pesel PESEL | --person-nip NIP) --first-name NAME --last-name NAME
                  | --entity NIP --entity-name NAME [--can-delegate]
                  --permission P[,P...] [--description TEXT] [--timeout D] [--verbose]

Grant permissions in the context --nip to a person (identified by PESEL or NIP) or to an entity
(another company, by NIP, e.g. an accounting office), then wait until KSeF has carried out the
operation. Needs CredentialsManage in the context (the owner has it).

Permissions of persons: InvoiceWrite, InvoiceRead, CredentialsManage, CredentialsRead,
Introspection, SubunitManage, EnforcementOperations. Of entities: InvoiceWrite, InvoiceRead
(--can-delegate lets the entity pass them on to its people).

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// runPermissionsGrant is ksef permissions grant.
func runPermissionsGrant(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef permissions grant", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	pesel := fs.String("pesel", "", "grant to the person with this `PESEL`")
	personNIP := fs.String("person-nip", "", "grant to the person with this `NIP`")
	firstName := fs.String("first-name", "", "the person's first `NAME` (2-30 characters)")
	lastName := fs.String("last-name", "", "the person's last `NAME` (2-81 characters)")
	entity := fs.String("entity", "", "grant to the entity with this `NIP`")
	entityName := fs.String("entity-name", "", "the entity's full `NAME` (5-90 characters)")
	canDelegate := fs.Bool("can-delegate", false, "let the entity pass the permissions on")
	perms := &permissionList{allowed: personPermissions}
	fs.Var(perms, "permission", "`P[,P...]` to grant (repeatable)")
	description := fs.String("description", "granted with the ksef-serverless CLI", "`TEXT` recorded with the grant (5-256 characters)")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, grantUsage(fs))
	if err != nil {
		return err
	}
	ids := 0
	for _, s := range []string{*pesel, *personNIP, *entity} {
		if s != "" {
			ids++
		}
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case ids != 1:
		return usagef("give one of --pesel, --person-nip and --entity")
	case len(perms.list) == 0:
		return usagef("--permission is required")
	case *entity == "" && (*firstName == "" || *lastName == ""):
		return usagef("a person needs --first-name and --last-name")
	case *entity != "" && *entityName == "":
		return usagef("an entity needs --entity-name")
	case *entity == "" && (*entityName != "" || *canDelegate):
		return usagef("--entity-name and --can-delegate go with --entity")
	case *entity != "" && (*firstName != "" || *lastName != ""):
		return usagef("--first-name and --last-name go with --pesel or --person-nip")
	}
	if err := checkDescription("--description", *description); err != nil {
		return err
	}
	if err := l.check(fs); err != nil {
		return err
	}
	var grant func(ctx context.Context, s *session) (*ksef.OperationRef, error)
	var whom string
	if *entity != "" {
		if !ksef.ValidNIP(*entity) {
			return usagef("--entity %q is not a NIP (10 digits)", *entity)
		}
		g := ksef.EntityGrant{NIP: *entity, Description: *description, FullName: *entityName}
		for _, p := range perms.list {
			if !slices.Contains(entityPermissions, p) {
				return usagef("an entity can get %s only, not %s", joinPermissions(entityPermissions), p)
			}
			g.Permissions = append(g.Permissions, ksef.EntityPermission{Type: p, CanDelegate: *canDelegate})
		}
		whom = fmt.Sprintf("entity NIP %s (%s)", *entity, *entityName)
		grant = func(ctx context.Context, s *session) (*ksef.OperationRef, error) {
			return s.client.GrantEntityPermissions(ctx, g)
		}
	} else {
		subject := ksef.PeselSubject(*pesel)
		whom = "person PESEL " + *pesel
		if *personNIP != "" {
			if !ksef.ValidNIP(*personNIP) {
				return usagef("--person-nip %q is not a NIP (10 digits)", *personNIP)
			}
			subject, whom = ksef.NipSubject(*personNIP), "person NIP "+*personNIP
		}
		whom += fmt.Sprintf(" (%s %s)", *firstName, *lastName)
		g := ksef.PersonGrant{
			Subject:        subject,
			Permissions:    perms.list,
			Description:    *description,
			SubjectDetails: ksef.PersonDetails{FirstName: *firstName, LastName: *lastName},
		}
		grant = func(ctx context.Context, s *session) (*ksef.OperationRef, error) {
			return s.client.GrantPersonPermissions(ctx, g)
		}
	}
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		op, err := grant(ctx, s)
		if err != nil {
			return fmt.Errorf("grant %s to %s: %w", perms, whom, err)
		}
		x.progressf("KSeF accepted the grant (operation %s)", op.ReferenceNumber)
		if err := s.waitPermissionOperation(ctx, op.ReferenceNumber); err != nil {
			return fmt.Errorf("grant %s to %s: %w", perms, whom, err)
		}
		fmt.Fprintf(x.stdout, "Granted %s to %s in context NIP %s (operation %s)\n", perms, whom, l.nip, op.ReferenceNumber)
		return nil
	})
}

// waitPermissionOperation polls a permission operation until it is final: nil for 200, an error
// with KSeF's status otherwise.
func (s *session) waitPermissionOperation(ctx context.Context, ref string) error {
	return s.poll(ctx, "permission operation "+ref, func(ctx context.Context) (bool, string, error) {
		st, err := s.client.PermissionOperationStatus(ctx, ref)
		if err != nil {
			return false, "", fmt.Errorf("status of operation %s: %w", ref, err)
		}
		return operationDone("operation "+ref, st.Status)
	})
}

// operationDone reads the status of a KSeF operation (what names it) the way s.poll wants it:
// done for 200, an error with KSeF's status for 300 and above, else still in progress.
func operationDone(what string, st ksef.Status) (done bool, status string, err error) {
	switch {
	case st.Code == 200:
		return true, "", nil
	case st.Code >= 300:
		return false, "", fmt.Errorf("%s failed: %s", what, describeStatus(st))
	}
	return false, describeStatus(st), nil
}

func listPermissionsUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef permissions list [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--mine] [--json] [--timeout D] [--verbose]

List the permissions in force in the context --nip (of persons and entities; needs
CredentialsManage or CredentialsRead) or, with --mine, those of the subject that logs in. One
line per permission: ID, holder, permission, state, granted by, since, description; the ID is
what ksef permissions revoke takes. With --json, one JSON object per permission.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// permissionRow is one permission as ksef permissions list prints it.
type permissionRow struct {
	ID          string    `json:"id"`
	Holder      string    `json:"holder"` // "Pesel 80010112345 (Jan Testowy)"
	Permission  string    `json:"permission"`
	State       string    `json:"state"`
	GrantedBy   string    `json:"grantedBy,omitempty"`
	Context     string    `json:"context,omitempty"` // --mine: where the permission applies
	Since       time.Time `json:"since"`
	CanDelegate bool      `json:"canDelegate,omitempty"`
	Description string    `json:"description"`
}

func subjectText(s *ksef.SubjectIdentifier) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(string(s.Type) + " " + s.Value)
}

func holderName(p *ksef.PermissionPersonDetails, e *ksef.PermissionEntityDetails) string {
	switch {
	case p != nil && (p.FirstName != "" || p.LastName != ""):
		return " (" + strings.TrimSpace(p.FirstName+" "+p.LastName) + ")"
	case e != nil && e.FullName != "":
		return " (" + e.FullName + ")"
	}
	return ""
}

// runPermissionsList is ksef permissions list.
func runPermissionsList(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef permissions list", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	mine := fs.Bool("mine", false, "list the permissions of the subject that logs in instead")
	jsonOut := fs.Bool("json", false, "print one JSON object per permission")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, listPermissionsUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if err := l.check(fs); err != nil {
		return err
	}
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		var rows []permissionRow
		for page := 0; ; page++ {
			if *mine {
				p, err := s.client.QueryPersonalPermissions(ctx, ksef.PersonalPermissionQuery{}, ksef.PageRequest{PageOffset: page, PageSize: 100})
				if err != nil {
					return fmt.Errorf("query own permissions: %w", err)
				}
				for _, q := range p.Permissions {
					holder := "you"
					if q.Authorized != nil {
						holder = subjectText(q.Authorized) // the caller's company, say
					}
					r := permissionRow{ID: q.ID, Holder: holder + holderName(q.Person, q.Entity), Permission: string(q.Scope),
						State: string(q.State), Since: q.StartDate, CanDelegate: q.CanDelegate, Description: q.Description}
					if q.Context != nil {
						r.Context = subjectText(&ksef.SubjectIdentifier{Type: ksef.IdentifierType(q.Context.Type), Value: q.Context.Value})
					}
					rows = append(rows, r)
				}
				if !p.HasMore {
					break
				}
				continue
			}
			p, err := s.client.QueryPersonPermissions(ctx, ksef.PersonPermissionQuery{Type: ksef.PermissionsInCurrentContext}, ksef.PageRequest{PageOffset: page, PageSize: 100})
			if err != nil {
				return fmt.Errorf("query permissions: %w", err)
			}
			for _, q := range p.Permissions {
				rows = append(rows, permissionRow{ID: q.ID, Holder: subjectText(&q.Authorized) + holderName(q.Person, q.Entity),
					Permission: string(q.Scope), State: string(q.State), GrantedBy: subjectText(&q.Author), Since: q.StartDate,
					CanDelegate: q.CanDelegate, Description: q.Description})
			}
			if !p.HasMore {
				break
			}
		}
		if *jsonOut {
			return writeJSONLines(x.stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(x.stdout, "No permissions.")
			return nil
		}
		by := "GRANTED BY"
		if *mine {
			by = "CONTEXT"
		}
		t := newTable(x.stdout, "ID", "HOLDER", "PERMISSION", "STATE", by, "SINCE", "DESCRIPTION")
		for _, r := range rows {
			perm := r.Permission
			if r.CanDelegate {
				perm += " (can delegate)"
			}
			by := r.GrantedBy
			if *mine {
				by = r.Context
			}
			t.row(r.ID, r.Holder, perm, r.State, by, dateText(r.Since), r.Description)
		}
		return t.flush()
	})
}

func revokePermissionUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef permissions revoke [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--timeout D] [--verbose] ID

Revoke the permission with the ID that ksef permissions list shows, and wait until KSeF has
carried out the operation. Needs CredentialsManage in the context.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// runPermissionsRevoke is ksef permissions revoke.
func runPermissionsRevoke(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef permissions revoke", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, revokePermissionUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give the ID of one permission (ksef permissions list shows them)")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	id := rest[0]
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		op, err := s.client.RevokePermission(ctx, id)
		if err != nil {
			return fmt.Errorf("revoke permission %s: %w", id, err)
		}
		x.progressf("KSeF accepted the revocation (operation %s)", op.ReferenceNumber)
		if err := s.waitPermissionOperation(ctx, op.ReferenceNumber); err != nil {
			return fmt.Errorf("revoke permission %s: %w", id, err)
		}
		fmt.Fprintf(x.stdout, "Revoked permission %s in context NIP %s (operation %s)\n", id, l.nip, op.ReferenceNumber)
		return nil
	})
}

// dateText formats a time for tables: RFC 3339 in UTC, "-" for none.
func dateText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// table writes aligned columns.
type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer, header ...string) *table {
	return &table{w: w, rows: [][]string{header}}
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) flush() error {
	widths := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var errs []error
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		_, err := fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
