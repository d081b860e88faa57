package secrets

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// State is the KSeF session state of one NIP, kept as JSON in the state secret
// ("ksef/<NIP>/session" by default). Read it with Store.State or Store.LatestState and change it
// only through Store.Update (or Store.SaveTokens), which writes with compare-and-swap. A State
// remembers the secret version it was read at.
type State struct {
	// AccessToken authorises KSeF business calls; it lives about 15 minutes.
	AccessToken ksef.Token `json:"accessToken,omitzero"`
	// RefreshToken renews AccessToken; it lives up to 7 days and is not rotated by a refresh.
	RefreshToken ksef.Token `json:"refreshToken,omitzero"`
	// TokenIssuedAt is when AccessToken was obtained (redeemed or refreshed). With
	// AccessToken.ValidUntil it gives the token's lifetime, which caps the refresh margin.
	TokenIssuedAt time.Time `json:"tokenIssuedAt,omitzero"`
	// TokenOwner names the Store instance (Lambda execution environment) that refreshed
	// AccessToken last and is expected to refresh it next; empty after a login. See the package
	// documentation.
	TokenOwner string `json:"tokenOwner,omitempty"`
	// PendingAuth is set while an authentication is being polled.
	PendingAuth *PendingAuth `json:"pendingAuth,omitempty"`
	// Session is the online session currently open for the NIP, if any.
	Session *OnlineSession `json:"session,omitempty"`
	// UpdatedAt is when the state was last written; every write sets it.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// UpdatedBy names the last write: the writing Store instance and a sequence number. Every
	// write sets it, which also makes the content of every write unique, as the
	// compare-and-swap requires (two writers of equal content would both succeed).
	UpdatedBy string `json:"updatedBy,omitempty"`

	version string // VersionId of the secret value this state was read from or written as
}

// PendingAuth is an authentication started (challenge answered, token or XAdES document
// submitted) but not redeemed yet.
type PendingAuth struct {
	ReferenceNumber     string     `json:"referenceNumber"`
	AuthenticationToken ksef.Token `json:"authenticationToken"`
	StartedAt           time.Time  `json:"startedAt"`
	Method              AuthMethod `json:"method"`
}

// OnlineSession is an open KSeF online session shared by the pipeline's executions.
type OnlineSession struct {
	Handle *ksef.SessionHandle `json:"handle"`
	// InvoicesSent counts invoices sent in the session (KSeF accepts at most 10 000). Every
	// change is a secret version: count in batches rather than writing after each invoice (see
	// the package documentation on the write budget).
	InvoicesSent int       `json:"invoicesSent"`
	OpenedAt     time.Time `json:"openedAt"`
}

// clone returns a deep copy of st, version included.
func (st *State) clone() *State {
	c := *st
	if st.PendingAuth != nil {
		p := *st.PendingAuth
		c.PendingAuth = &p
	}
	if st.Session != nil {
		o := *st.Session
		if o.Handle != nil {
			h := *o.Handle
			h.Key = slices.Clone(h.Key)
			h.IV = slices.Clone(h.IV)
			o.Handle = &h
		}
		c.Session = &o
	}
	return &c
}

func (st *State) marshal() (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		// Only an unencodable time can fail here; the message holds no secret.
		return "", fmt.Errorf("encode state: %w", err)
	}
	return string(b), nil
}

// decodeState parses a state secret value. An empty value is the zero State.
func decodeState(value string) (*State, error) {
	st := &State{}
	if strings.TrimSpace(value) == "" {
		return st, nil
	}
	if err := json.Unmarshal([]byte(value), st); err != nil {
		return nil, fmt.Errorf("decode state: %w", redactJSONError(err))
	}
	return st, nil
}

// redactJSONError describes a JSON decoding error without any byte of the document: the
// encoding/json messages quote offending values (a number, a character), and the documents here
// hold tokens and keys. The original error is deliberately not wrapped.
func redactJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tim *time.ParseError
	var b64 base64.CorruptInputError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %q has the wrong JSON type (want %s)", typ.Field, typ.Type)
		}
		return fmt.Errorf("wrong JSON type (want %s)", typ.Type)
	case errors.As(err, &tim):
		return errors.New("invalid date-time value")
	case errors.As(err, &b64):
		return errors.New("invalid base64 value")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errors.New(strings.TrimPrefix(err.Error(), "json: ")) // holds the field name only
	}
	return errors.New("malformed JSON")
}
