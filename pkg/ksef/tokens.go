package ksef

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// TokenRequest asks for a new KSeF token.
type TokenRequest struct {
	// Permissions fixed in the token: any of InvoiceRead, InvoiceWrite, CredentialsRead,
	// CredentialsManage, SubunitManage, EnforcementOperations, Introspection, and only ones the
	// caller holds (26001 otherwise).
	Permissions []Permission
	Description string // 5-256 characters
}

// GeneratedToken is a new KSeF token. KSeF shows the token only once: store it in a secret
// store at once. It can be used to log in once its status is Active (TokenStatus).
type GeneratedToken struct {
	ReferenceNumber string // the token's reference number, e.g. 20251010-EC-...
	Token           Secret
}

// GenerateToken creates a KSeF token for the current context (POST /tokens). KSeF allows it only
// to callers that logged in with XAdES (403 auth-method-not-allowed after a token login) in a
// Nip or InternalId context (26002 otherwise). The call is not retried after a 5xx: a token may
// have been created, and it is shown only once.
func (c *Client) GenerateToken(ctx context.Context, r TokenRequest) (*GeneratedToken, error) {
	const op = "GenerateToken"
	if err := checkPermissions(r.Permissions, personPermissions); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if err := checkDescription(r.Description); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/tokens"), struct {
		Permissions []Permission `json:"permissions"`
		Description string       `json:"description"`
	}{r.Permissions, r.Description})
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w struct {
		ReferenceNumber string `json:"referenceNumber"`
		Token           Secret `json:"token"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	if w.ReferenceNumber == "" || w.Token == "" {
		return nil, fmt.Errorf("ksef: %s: response lacks the reference number or the token", op)
	}
	return &GeneratedToken{ReferenceNumber: w.ReferenceNumber, Token: w.Token}, nil
}

// TokenState is the life-cycle state of a KSeF token.
type TokenState string

// Token states.
const (
	TokenPending  TokenState = "Pending"  // being activated; cannot be used yet
	TokenActive   TokenState = "Active"   // usable for logins
	TokenRevoking TokenState = "Revoking" // being revoked; no longer usable
	TokenRevoked  TokenState = "Revoked"
	TokenFailed   TokenState = "Failed" // activation failed; generate another token
)

// TokenInfo describes a KSeF token (never the token itself).
type TokenInfo struct {
	ReferenceNumber string
	Author          SubjectIdentifier // who generated it
	Context         ContextIdentifier // where it gives access
	Description     string
	Permissions     []Permission
	DateCreated     time.Time
	LastUseDate     time.Time // zero if never used
	Status          TokenState
	StatusDetails   []string
}

type tokenInfoWire struct {
	ReferenceNumber      string            `json:"referenceNumber"`
	AuthorIdentifier     SubjectIdentifier `json:"authorIdentifier"`
	ContextIdentifier    ContextIdentifier `json:"contextIdentifier"`
	Description          string            `json:"description"`
	RequestedPermissions []Permission      `json:"requestedPermissions"`
	DateCreated          apiTime           `json:"dateCreated"`
	LastUseDate          apiTime           `json:"lastUseDate"`
	Status               TokenState        `json:"status"`
	StatusDetails        []string          `json:"statusDetails"`
}

func (w tokenInfoWire) info() TokenInfo {
	return TokenInfo{
		ReferenceNumber: w.ReferenceNumber,
		Author:          w.AuthorIdentifier,
		Context:         w.ContextIdentifier,
		Description:     w.Description,
		Permissions:     w.RequestedPermissions,
		DateCreated:     w.DateCreated.Time,
		LastUseDate:     w.LastUseDate.Time,
		Status:          w.Status,
		StatusDetails:   w.StatusDetails,
	}
}

// TokenStatus describes one KSeF token of the context (GET /tokens/{referenceNumber}).
func (c *Client) TokenStatus(ctx context.Context, referenceNumber string) (*TokenInfo, error) {
	const op = "TokenStatus"
	if referenceNumber == "" {
		return nil, fmt.Errorf("ksef: %s: empty reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/tokens/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w tokenInfoWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	info := w.info()
	return &info, nil
}

// TokenListOptions filters and pages Tokens. The zero value lists every visible token, 10 per
// page.
type TokenListOptions struct {
	Statuses             []TokenState   // any of these; none for all
	Description          string         // part of the description, at least 3 characters
	AuthorIdentifier     string         // part of the author's identifier, at least 3 characters
	AuthorIdentifierType IdentifierType // Nip, Pesel or Fingerprint
	PageSize             int            // 10-100; 0 for KSeF's default (10)
	ContinuationToken    string         // from the previous page; "" for the first
}

// TokenPage is one page of KSeF tokens, newest first. An empty ContinuationToken means it is
// the last page.
type TokenPage struct {
	Tokens            []TokenInfo
	ContinuationToken string
}

// Tokens lists the context's KSeF tokens the caller may see (GET /tokens): with CredentialsManage
// or CredentialsRead all of them; after a token login only that token; otherwise the tokens the
// caller generated.
func (c *Client) Tokens(ctx context.Context, opts *TokenListOptions) (*TokenPage, error) {
	const op = "Tokens"
	var o TokenListOptions
	if opts != nil {
		o = *opts
	}
	q := url.Values{}
	for _, s := range o.Statuses {
		if !slices.Contains([]TokenState{TokenPending, TokenActive, TokenRevoking, TokenRevoked, TokenFailed}, s) {
			return nil, fmt.Errorf("ksef: %s: unknown token status %q", op, s)
		}
		q.Add("status", string(s))
	}
	for name, v := range map[string]string{"description": o.Description, "authorIdentifier": o.AuthorIdentifier} {
		if v == "" {
			continue
		}
		if utf8.RuneCountInString(v) < 3 {
			return nil, fmt.Errorf("ksef: %s: %s filter needs at least 3 characters", op, name)
		}
		q.Set(name, v)
	}
	switch o.AuthorIdentifierType {
	case "":
	case IdentifierNip, IdentifierPesel, IdentifierFingerprint:
		q.Set("authorIdentifierType", string(o.AuthorIdentifierType))
	default:
		return nil, fmt.Errorf("ksef: %s: author identifier type %q is not Nip, Pesel or Fingerprint", op, o.AuthorIdentifierType)
	}
	if o.PageSize != 0 {
		if o.PageSize < 10 || o.PageSize > 100 {
			return nil, fmt.Errorf("ksef: %s: page size %d outside 10-100", op, o.PageSize)
		}
		q.Set("pageSize", strconv.Itoa(o.PageSize))
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/tokens").withQuery(q), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	if o.ContinuationToken != "" {
		req.Header.Set("x-continuation-token", o.ContinuationToken)
	}
	var w struct {
		ContinuationToken string          `json:"continuationToken"`
		Tokens            []tokenInfoWire `json:"tokens"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	page := &TokenPage{ContinuationToken: w.ContinuationToken, Tokens: make([]TokenInfo, len(w.Tokens))}
	for i, t := range w.Tokens {
		page.Tokens[i] = t.info()
	}
	return page, nil
}

// RevokeToken revokes a KSeF token (DELETE /tokens/{referenceNumber}); it stops working at once
// and goes Revoking, then Revoked. With CredentialsManage any token of the context; after a
// token login only that token; otherwise the tokens the caller generated.
func (c *Client) RevokeToken(ctx context.Context, referenceNumber string) error {
	const op = "RevokeToken"
	if referenceNumber == "" {
		return fmt.Errorf("ksef: %s: empty reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodDelete, pathOf("/tokens/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	return c.do(req, nil)
}
