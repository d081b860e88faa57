package ksef

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Permission is a KSeF permission: what a person, an entity or a KSeF token may do in a context.
type Permission string

// Permissions. Persons can be granted all but VatUeManage; entities InvoiceWrite and
// InvoiceRead; KSeF tokens all but VatUeManage, and only those their author holds.
const (
	PermissionInvoiceWrite          Permission = "InvoiceWrite"          // issue invoices
	PermissionInvoiceRead           Permission = "InvoiceRead"           // read invoices
	PermissionCredentialsManage     Permission = "CredentialsManage"     // grant and revoke permissions, manage tokens
	PermissionCredentialsRead       Permission = "CredentialsRead"       // read permissions and tokens
	PermissionIntrospection         Permission = "Introspection"         // read session history and UPOs
	PermissionSubunitManage         Permission = "SubunitManage"         // manage subunits
	PermissionEnforcementOperations Permission = "EnforcementOperations" // enforcement authorities and bailiffs only
	PermissionVatUeManage           Permission = "VatUeManage"           // EU entities; appears in personal queries
)

// personPermissions are the permissions POST /permissions/persons/grants and POST /tokens accept.
var personPermissions = []Permission{
	PermissionInvoiceWrite, PermissionInvoiceRead, PermissionCredentialsManage, PermissionCredentialsRead,
	PermissionIntrospection, PermissionSubunitManage, PermissionEnforcementOperations,
}

// IdentifierType is the kind of identifier of a person or entity in permissions, tokens and
// certificates.
type IdentifierType string

// Identifier types.
const (
	IdentifierNip         IdentifierType = "Nip"
	IdentifierPesel       IdentifierType = "Pesel"
	IdentifierFingerprint IdentifierType = "Fingerprint" // SHA-256 of a certificate, hex
	IdentifierSystem      IdentifierType = "System"      // KSeF itself, as the author of a permission (no value)
)

// SubjectIdentifier identifies a person or an entity: by NIP, by PESEL or by the fingerprint of
// the certificate it authenticates with.
type SubjectIdentifier struct {
	Type  IdentifierType `json:"type"`
	Value string         `json:"value,omitempty"`
}

// NipSubject identifies a subject by NIP.
func NipSubject(nip string) SubjectIdentifier {
	return SubjectIdentifier{Type: IdentifierNip, Value: nip}
}

// PeselSubject identifies a person by PESEL.
func PeselSubject(pesel string) SubjectIdentifier {
	return SubjectIdentifier{Type: IdentifierPesel, Value: pesel}
}

// FingerprintSubject identifies whoever authenticates with cert by the certificate's fingerprint
// (SHA-256 of the DER certificate, upper-case hex): the identity KSeF uses for XAdES logins with
// SubjectFingerprint, for certificates that carry no NIP or PESEL.
func FingerprintSubject(cert *x509.Certificate) SubjectIdentifier {
	sum := sha256.Sum256(cert.Raw)
	return SubjectIdentifier{Type: IdentifierFingerprint, Value: strings.ToUpper(hex.EncodeToString(sum[:]))}
}

var fingerprintPattern = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)

// check validates a subject identifier of a request: a NIP, a PESEL or a SHA-256 fingerprint.
func (s SubjectIdentifier) check() error {
	switch s.Type {
	case IdentifierNip:
		if !ValidNIP(s.Value) {
			return fmt.Errorf("subject %q is not a NIP", s.Value)
		}
	case IdentifierPesel:
		if !peselPattern.MatchString(s.Value) {
			return fmt.Errorf("subject %q is not a PESEL", s.Value)
		}
	case IdentifierFingerprint:
		if !fingerprintPattern.MatchString(s.Value) {
			return errors.New("subject fingerprint must be 64 hexadecimal characters (SHA-256)")
		}
	default:
		return fmt.Errorf("subject identifier type %q is not Nip, Pesel or Fingerprint", s.Type)
	}
	return nil
}

// OperationRef identifies an asynchronous KSeF operation: a permission grant or revocation
// (poll PermissionOperationStatus) or a certificate enrollment (poll EnrollmentStatus).
type OperationRef struct {
	ReferenceNumber string
	Timestamp       time.Time // when KSeF accepted the request; certificate enrollments only
}

// PageRequest selects a page of a list paged by number (permission and certificate queries).
// The zero value asks for the first page in KSeF's default size (10).
type PageRequest struct {
	PageOffset int // the page's index, 0 for the first page (not an item offset)
	PageSize   int // 0 for KSeF's default; each query has its own range
}

// query returns the pageOffset and pageSize parameters, checking the size against the list's
// range.
func (p PageRequest) query(maxSize int) (url.Values, error) {
	q := url.Values{}
	if p.PageOffset < 0 {
		return nil, fmt.Errorf("negative page offset %d", p.PageOffset)
	}
	q.Set("pageOffset", strconv.Itoa(p.PageOffset))
	if p.PageSize != 0 {
		if p.PageSize < 10 || p.PageSize > maxSize {
			return nil, fmt.Errorf("page size %d outside 10-%d", p.PageSize, maxSize)
		}
		q.Set("pageSize", strconv.Itoa(p.PageSize))
	}
	return q, nil
}

// operationRefWire is PermissionsOperationResponse and EnrollCertificateResponse.
type operationRefWire struct {
	ReferenceNumber string  `json:"referenceNumber"`
	Timestamp       apiTime `json:"timestamp"`
}

func (w operationRefWire) ref(op string) (*OperationRef, error) {
	if w.ReferenceNumber == "" {
		return nil, fmt.Errorf("ksef: %s: response has no reference number", op)
	}
	return &OperationRef{ReferenceNumber: w.ReferenceNumber, Timestamp: w.Timestamp.Time}, nil
}

// PersonDetails names the person a permission is granted to. What KSeF needs depends on how the
// person authenticates: by a certificate or Trusted Profile carrying their NIP or PESEL (subject
// type Nip or Pesel: the name is enough), or by certificate fingerprint (subject type
// Fingerprint: Identifier if the person has a NIP or PESEL, otherwise BirthDate and IDDocument).
type PersonDetails struct {
	FirstName  string             // 2-30 characters
	LastName   string             // 2-81 characters
	Identifier *SubjectIdentifier // Fingerprint subjects with a NIP or PESEL
	BirthDate  time.Time          // Fingerprint subjects without NIP and PESEL
	IDDocument *IDDocument        // Fingerprint subjects without NIP and PESEL
}

// IDDocument is an identity document of a person without NIP and PESEL.
type IDDocument struct {
	Type    string `json:"type"`    // kind of document, up to 20 characters
	Number  string `json:"number"`  // series and number, up to 20 characters
	Country string `json:"country"` // ISO 3166-1 alpha-2 code of the issuing country, e.g. "DE"
}

// PersonGrant grants permissions in the current context to a person (POST
// /permissions/persons/grants).
type PersonGrant struct {
	Subject        SubjectIdentifier // Nip, Pesel or Fingerprint
	Permissions    []Permission      // any of InvoiceWrite, InvoiceRead, CredentialsManage, CredentialsRead, Introspection, SubunitManage, EnforcementOperations
	Description    string            // 5-256 characters
	SubjectDetails PersonDetails
}

type personNameWire struct {
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
}

type personSubjectDetailsWire struct {
	SubjectDetailsType string          `json:"subjectDetailsType"`
	PersonByID         *personNameWire `json:"personById,omitempty"`
	PersonByFpWithID   *struct {
		personNameWire
		Identifier SubjectIdentifier `json:"identifier"`
	} `json:"personByFpWithId,omitempty"`
	PersonByFpNoID *struct {
		personNameWire
		BirthDate  string     `json:"birthDate"`
		IDDocument IDDocument `json:"idDocument"`
	} `json:"personByFpNoId,omitempty"`
}

var countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)

// wire builds subjectDetails, choosing its type from the subject's identifier type.
func (d PersonDetails) wire(subject IdentifierType) (*personSubjectDetailsWire, error) {
	if !runesBetween(d.FirstName, 2, 30) || !runesBetween(d.LastName, 2, 81) {
		return nil, errors.New("subject details need a first name of 2-30 and a last name of 2-81 characters")
	}
	name := personNameWire{FirstName: d.FirstName, LastName: d.LastName}
	switch {
	case subject != IdentifierFingerprint:
		if d.Identifier != nil || d.IDDocument != nil || !d.BirthDate.IsZero() {
			return nil, errors.New("subject details of a person identified by NIP or PESEL hold the name only")
		}
		return &personSubjectDetailsWire{SubjectDetailsType: "PersonByIdentifier", PersonByID: &name}, nil
	case d.Identifier != nil:
		if d.Identifier.Type != IdentifierNip && d.Identifier.Type != IdentifierPesel {
			return nil, errors.New("subject details identifier must be a NIP or a PESEL")
		}
		if err := d.Identifier.check(); err != nil {
			return nil, fmt.Errorf("subject details: %w", err)
		}
		w := &personSubjectDetailsWire{SubjectDetailsType: "PersonByFingerprintWithIdentifier"}
		w.PersonByFpWithID = &struct {
			personNameWire
			Identifier SubjectIdentifier `json:"identifier"`
		}{name, *d.Identifier}
		return w, nil
	default:
		doc := d.IDDocument
		if d.BirthDate.IsZero() || doc == nil {
			return nil, errors.New("subject details of a person without NIP and PESEL need the birth date and an identity document")
		}
		if !runesBetween(doc.Type, 1, 20) || !runesBetween(doc.Number, 1, 20) || !countryPattern.MatchString(doc.Country) {
			return nil, errors.New("identity document needs a type and a number of up to 20 characters and a two-letter country code")
		}
		w := &personSubjectDetailsWire{SubjectDetailsType: "PersonByFingerprintWithoutIdentifier"}
		w.PersonByFpNoID = &struct {
			personNameWire
			BirthDate  string     `json:"birthDate"`
			IDDocument IDDocument `json:"idDocument"`
		}{name, d.BirthDate.Format(time.DateOnly), *doc}
		return w, nil
	}
}

// checkPermissions validates a non-empty list of distinct permissions taken from allowed.
func checkPermissions(perms, allowed []Permission) error {
	if len(perms) == 0 {
		return errors.New("no permissions")
	}
	for i, p := range perms {
		if !slices.Contains(allowed, p) {
			return fmt.Errorf("permission %q not allowed here", p)
		}
		if slices.Contains(perms[:i], p) {
			return fmt.Errorf("permission %q given twice", p)
		}
	}
	return nil
}

func runesBetween(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}

func checkDescription(s string) error {
	if !runesBetween(s, 5, 256) {
		return errors.New("description must have 5-256 characters")
	}
	return nil
}

// GrantPersonPermissions grants permissions in the current context to a person (POST
// /permissions/persons/grants, needs CredentialsManage). The grant is asynchronous: poll
// PermissionOperationStatus until its status code is 200 (granted) or 400 or more (refused).
func (c *Client) GrantPersonPermissions(ctx context.Context, g PersonGrant) (*OperationRef, error) {
	const op = "GrantPersonPermissions"
	if err := g.Subject.check(); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if err := checkPermissions(g.Permissions, personPermissions); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if err := checkDescription(g.Description); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	details, err := g.SubjectDetails.wire(g.Subject.Type)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	body := struct {
		SubjectIdentifier SubjectIdentifier         `json:"subjectIdentifier"`
		Permissions       []Permission              `json:"permissions"`
		Description       string                    `json:"description"`
		SubjectDetails    *personSubjectDetailsWire `json:"subjectDetails"`
	}{g.Subject, g.Permissions, g.Description, details}
	return c.permissionOperation(ctx, op, http.MethodPost, pathOf("/permissions/persons/grants"), body)
}

// EntityPermission is a permission granted to an entity, which may pass it on (grant it
// indirectly to its own people) if CanDelegate is set.
type EntityPermission struct {
	Type        Permission `json:"type"` // InvoiceWrite or InvoiceRead
	CanDelegate bool       `json:"canDelegate"`
}

// EntityGrant grants an entity (another company, e.g. an accounting office) permissions to
// handle the current context's invoices (POST /permissions/entities/grants).
type EntityGrant struct {
	NIP         string // the entity's NIP
	Permissions []EntityPermission
	Description string // 5-256 characters
	FullName    string // the entity's full name, 5-90 characters
}

// GrantEntityPermissions grants permissions to handle the current context's invoices to an
// entity (POST /permissions/entities/grants, needs CredentialsManage). Poll
// PermissionOperationStatus for the outcome.
func (c *Client) GrantEntityPermissions(ctx context.Context, g EntityGrant) (*OperationRef, error) {
	const op = "GrantEntityPermissions"
	if !ValidNIP(g.NIP) {
		return nil, fmt.Errorf("ksef: %s: %q is not a NIP", op, g.NIP)
	}
	types := make([]Permission, len(g.Permissions))
	for i, p := range g.Permissions {
		types[i] = p.Type
	}
	if err := checkPermissions(types, []Permission{PermissionInvoiceWrite, PermissionInvoiceRead}); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if err := checkDescription(g.Description); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if !runesBetween(g.FullName, 5, 90) {
		return nil, fmt.Errorf("ksef: %s: full name must have 5-90 characters", op)
	}
	body := struct {
		SubjectIdentifier SubjectIdentifier  `json:"subjectIdentifier"`
		Permissions       []EntityPermission `json:"permissions"`
		Description       string             `json:"description"`
		SubjectDetails    struct {
			FullName string `json:"fullName"`
		} `json:"subjectDetails"`
	}{SubjectIdentifier: NipSubject(g.NIP), Permissions: g.Permissions, Description: g.Description}
	body.SubjectDetails.FullName = g.FullName
	return c.permissionOperation(ctx, op, http.MethodPost, pathOf("/permissions/entities/grants"), body)
}

// RevokePermission revokes a permission by the id the permission queries report (DELETE
// /permissions/common/grants/{permissionId}, needs CredentialsManage). Poll
// PermissionOperationStatus for the outcome.
func (c *Client) RevokePermission(ctx context.Context, permissionID string) (*OperationRef, error) {
	const op = "RevokePermission"
	if len(permissionID) != 36 {
		return nil, fmt.Errorf("ksef: %s: permission id must have 36 characters", op)
	}
	return c.permissionOperation(ctx, op, http.MethodDelete, pathOf("/permissions/common/grants/{permissionId}", permissionID), nil)
}

// permissionOperation starts a grant or revocation. Not retried after a 5xx: KSeF may have
// started the operation.
func (c *Client) permissionOperation(ctx context.Context, op, method string, p apiPath, body any) (*OperationRef, error) {
	req, err := c.newRequest(ctx, method, p, body)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.repeatable = op, false
	var w operationRefWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	return w.ref(op)
}

// PermissionOperation is the state of a permission grant or revocation. Status.Code: 100
// accepted, 200 done; 400 failed, 410 inconsistent identifiers, 420 the credentials lack the
// right, 430 the context does not have the required role, 440 not allowed for these
// relations, 450 not allowed for this identifier (type), 500 unknown error, 550 cancelled by
// the system (try again).
type PermissionOperation struct {
	Status Status
}

// PermissionOperationStatus makes one status call for a permission operation (GET
// /permissions/operations/{referenceNumber}). KSeF keeps the status for 30 days, then answers
// 410 (errors.Is(err, ErrGone)).
func (c *Client) PermissionOperationStatus(ctx context.Context, referenceNumber string) (*PermissionOperation, error) {
	const op = "PermissionOperationStatus"
	if referenceNumber == "" {
		return nil, fmt.Errorf("ksef: %s: empty reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/permissions/operations/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w struct {
		Status Status `json:"status"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	return &PermissionOperation{Status: w.Status}, nil
}

// PermissionState says whether a permission is in force.
type PermissionState string

// Permission states.
const (
	PermissionActive   PermissionState = "Active"
	PermissionInactive PermissionState = "Inactive" // indirect permissions not in force
)

// PersonQueryType selects which list QueryPersonPermissions returns.
type PersonQueryType string

// Person permission query types.
const (
	// PermissionsInCurrentContext lists the permissions in force in the current context.
	PermissionsInCurrentContext PersonQueryType = "PermissionsInCurrentContext"
	// PermissionsGrantedInCurrentContext lists the permissions the caller granted in the
	// current context.
	PermissionsGrantedInCurrentContext PersonQueryType = "PermissionsGrantedInCurrentContext"
)

// TargetType is the kind of target of an indirect permission.
type TargetType string

// Target types.
const (
	TargetNip         TargetType = "Nip"
	TargetInternalID  TargetType = "InternalId"
	TargetAllPartners TargetType = "AllPartners" // a general indirect permission (no value)
)

// TargetIdentifier is the entity an indirect permission lets its holder work for.
type TargetIdentifier struct {
	Type  TargetType `json:"type"`
	Value string     `json:"value,omitempty"`
}

// PersonPermissionQuery filters QueryPersonPermissions. Only Type is required.
type PersonPermissionQuery struct {
	Type            PersonQueryType
	Author          *SubjectIdentifier // who granted (Nip, Pesel, Fingerprint, or System without value)
	Authorized      *SubjectIdentifier // who holds the permission
	Context         *ContextIdentifier // Nip or InternalId: permissions of subunit administrators
	Target          *TargetIdentifier  // indirect permissions for this target
	PermissionTypes []Permission
	State           PermissionState // "" for any
}

// PermissionPersonDetails describes the person holding a permission.
type PermissionPersonDetails struct {
	DetailsType      string // PersonByIdentifier, PersonByFingerprintWithIdentifier, PersonByFingerprintWithoutIdentifier
	FirstName        string
	LastName         string
	PersonIdentifier *SubjectIdentifier
	BirthDate        time.Time
	IDDocument       *IDDocument
}

// PermissionEntityDetails describes the entity holding a permission.
type PermissionEntityDetails struct {
	DetailsType string // EntityByIdentifier or EntityByFingerprint
	FullName    string
	Address     string
}

// PersonPermission is a permission held in the context, as QueryPersonPermissions lists it.
type PersonPermission struct {
	ID          string // for RevokePermission
	Authorized  SubjectIdentifier
	Context     *ContextIdentifier
	Target      *TargetIdentifier
	Author      SubjectIdentifier
	Scope       Permission
	Description string
	Person      *PermissionPersonDetails
	Entity      *PermissionEntityDetails
	State       PermissionState
	StartDate   time.Time
	CanDelegate bool
}

// PersonPermissionPage is one page of QueryPersonPermissions.
type PersonPermissionPage struct {
	Permissions []PersonPermission
	HasMore     bool // ask for the next PageOffset
}

type permissionDetailsWire struct {
	SubjectPersonDetails *struct {
		SubjectDetailsType string             `json:"subjectDetailsType"`
		FirstName          string             `json:"firstName"`
		LastName           string             `json:"lastName"`
		PersonIdentifier   *SubjectIdentifier `json:"personIdentifier"`
		BirthDate          apiTime            `json:"birthDate"`
		IDDocument         *IDDocument        `json:"idDocument"`
	} `json:"subjectPersonDetails"`
	SubjectEntityDetails *struct {
		SubjectDetailsType string `json:"subjectDetailsType"`
		FullName           string `json:"fullName"`
		Address            string `json:"address"`
	} `json:"subjectEntityDetails"`
}

func (w permissionDetailsWire) details() (*PermissionPersonDetails, *PermissionEntityDetails) {
	var p *PermissionPersonDetails
	var e *PermissionEntityDetails
	if d := w.SubjectPersonDetails; d != nil {
		p = &PermissionPersonDetails{DetailsType: d.SubjectDetailsType, FirstName: d.FirstName, LastName: d.LastName,
			PersonIdentifier: d.PersonIdentifier, BirthDate: d.BirthDate.Time, IDDocument: d.IDDocument}
	}
	if d := w.SubjectEntityDetails; d != nil {
		e = &PermissionEntityDetails{DetailsType: d.SubjectDetailsType, FullName: d.FullName, Address: d.Address}
	}
	return p, e
}

// QueryPersonPermissions lists the permissions of persons and entities in the current context
// (POST /permissions/query/persons/grants, needs CredentialsManage, CredentialsRead or
// SubunitManage), newest first. PageSize, if set, must be 10-100.
func (c *Client) QueryPersonPermissions(ctx context.Context, q PersonPermissionQuery, page PageRequest) (*PersonPermissionPage, error) {
	const op = "QueryPersonPermissions"
	if q.Type != PermissionsInCurrentContext && q.Type != PermissionsGrantedInCurrentContext {
		return nil, fmt.Errorf("ksef: %s: query type %q is not %s or %s", op, q.Type, PermissionsInCurrentContext, PermissionsGrantedInCurrentContext)
	}
	body := struct {
		AuthorIdentifier     *SubjectIdentifier `json:"authorIdentifier,omitempty"`
		AuthorizedIdentifier *SubjectIdentifier `json:"authorizedIdentifier,omitempty"`
		ContextIdentifier    *ContextIdentifier `json:"contextIdentifier,omitempty"`
		TargetIdentifier     *TargetIdentifier  `json:"targetIdentifier,omitempty"`
		PermissionTypes      []Permission       `json:"permissionTypes,omitempty"`
		PermissionState      PermissionState    `json:"permissionState,omitempty"`
		QueryType            PersonQueryType    `json:"queryType"`
	}{q.Author, q.Authorized, q.Context, q.Target, q.PermissionTypes, q.State, q.Type}
	var w struct {
		Permissions []struct {
			ID                   string             `json:"id"`
			AuthorizedIdentifier SubjectIdentifier  `json:"authorizedIdentifier"`
			ContextIdentifier    *ContextIdentifier `json:"contextIdentifier"`
			TargetIdentifier     *TargetIdentifier  `json:"targetIdentifier"`
			AuthorIdentifier     SubjectIdentifier  `json:"authorIdentifier"`
			PermissionScope      Permission         `json:"permissionScope"`
			Description          string             `json:"description"`
			permissionDetailsWire
			PermissionState PermissionState `json:"permissionState"`
			StartDate       apiTime         `json:"startDate"`
			CanDelegate     bool            `json:"canDelegate"`
		} `json:"permissions"`
		HasMore bool `json:"hasMore"`
	}
	if err := c.query(ctx, op, "/permissions/query/persons/grants", page, 100, body, &w); err != nil {
		return nil, err
	}
	out := &PersonPermissionPage{HasMore: w.HasMore, Permissions: make([]PersonPermission, len(w.Permissions))}
	for i, p := range w.Permissions {
		person, entity := p.details()
		out.Permissions[i] = PersonPermission{
			ID: p.ID, Authorized: p.AuthorizedIdentifier, Context: p.ContextIdentifier, Target: p.TargetIdentifier,
			Author: p.AuthorIdentifier, Scope: p.PermissionScope, Description: p.Description, Person: person, Entity: entity,
			State: p.PermissionState, StartDate: p.StartDate.Time, CanDelegate: p.CanDelegate,
		}
	}
	return out, nil
}

// PersonalPermissionQuery filters QueryPersonalPermissions; the zero value lists everything.
type PersonalPermissionQuery struct {
	Context         *ContextIdentifier // the context that granted the permission (Nip or InternalId)
	Target          *TargetIdentifier
	PermissionTypes []Permission
	State           PermissionState // "" for any
}

// PersonalPermission is one of the caller's own permissions, as QueryPersonalPermissions lists
// it.
type PersonalPermission struct {
	ID          string
	Context     *ContextIdentifier // the context that granted it
	Authorized  *SubjectIdentifier // the holder, when it is not the caller (e.g. the caller's company)
	Target      *TargetIdentifier
	Scope       Permission
	Description string
	Person      *PermissionPersonDetails
	Entity      *PermissionEntityDetails
	State       PermissionState
	StartDate   time.Time
	CanDelegate bool
}

// PersonalPermissionPage is one page of QueryPersonalPermissions.
type PersonalPermissionPage struct {
	Permissions []PersonalPermission
	HasMore     bool // ask for the next PageOffset
}

// QueryPersonalPermissions lists the caller's own permissions in the current context (POST
// /permissions/query/personal/grants), newest first. PageSize, if set, must be 10-100.
func (c *Client) QueryPersonalPermissions(ctx context.Context, q PersonalPermissionQuery, page PageRequest) (*PersonalPermissionPage, error) {
	const op = "QueryPersonalPermissions"
	body := struct {
		ContextIdentifier *ContextIdentifier `json:"contextIdentifier,omitempty"`
		TargetIdentifier  *TargetIdentifier  `json:"targetIdentifier,omitempty"`
		PermissionTypes   []Permission       `json:"permissionTypes,omitempty"`
		PermissionState   PermissionState    `json:"permissionState,omitempty"`
	}{q.Context, q.Target, q.PermissionTypes, q.State}
	var w struct {
		Permissions []struct {
			ID                   string             `json:"id"`
			ContextIdentifier    *ContextIdentifier `json:"contextIdentifier"`
			AuthorizedIdentifier *SubjectIdentifier `json:"authorizedIdentifier"`
			TargetIdentifier     *TargetIdentifier  `json:"targetIdentifier"`
			PermissionScope      Permission         `json:"permissionScope"`
			Description          string             `json:"description"`
			permissionDetailsWire
			PermissionState PermissionState `json:"permissionState"`
			StartDate       apiTime         `json:"startDate"`
			CanDelegate     bool            `json:"canDelegate"`
		} `json:"permissions"`
		HasMore bool `json:"hasMore"`
	}
	if err := c.query(ctx, op, "/permissions/query/personal/grants", page, 100, body, &w); err != nil {
		return nil, err
	}
	out := &PersonalPermissionPage{HasMore: w.HasMore, Permissions: make([]PersonalPermission, len(w.Permissions))}
	for i, p := range w.Permissions {
		person, entity := p.details()
		out.Permissions[i] = PersonalPermission{
			ID: p.ID, Context: p.ContextIdentifier, Authorized: p.AuthorizedIdentifier, Target: p.TargetIdentifier,
			Scope: p.PermissionScope, Description: p.Description, Person: person, Entity: entity,
			State: p.PermissionState, StartDate: p.StartDate.Time, CanDelegate: p.CanDelegate,
		}
	}
	return out, nil
}

// query posts a read-only query paged by number; safe to repeat.
func (c *Client) query(ctx context.Context, op, path string, page PageRequest, maxSize int, body, v any) error {
	params, err := page.query(maxSize)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf(path).withQuery(params), body)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.repeatable = op, true
	return c.do(req, v)
}
