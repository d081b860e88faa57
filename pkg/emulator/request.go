package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// authKind says which bearer token an endpoint takes.
type authKind int

const (
	authNone      authKind = iota
	authOperation          // the authentication (operation) token of an authentication
	authAccess             // an access token
	authRefresh            // a refresh token
	authAny                // an access or a refresh token (DELETE /auth/sessions/current)
)

// request is one API request being served.
type request struct {
	e       *Emulator
	w       http.ResponseWriter
	r       *http.Request
	now     time.Time
	trace   string
	ip      string
	op      string // "POST /sessions/online": the operation, for error bodies
	claims  *claims
	pattern string
}

// route registers an API endpoint: pattern is "METHOD /path" below /v2.
func (e *Emulator) route(mux *http.ServeMux, pattern, group string, auth authKind, h func(*request)) {
	method, path, _ := strings.Cut(pattern, " ")
	mux.HandleFunc(method+" "+apiPrefix+path, func(w http.ResponseWriter, r *http.Request) {
		q := &request{e: e, w: w, r: r, now: e.now(), trace: newTraceID(), ip: clientIP(r), op: pattern, pattern: pattern}
		if warning := r.Header.Get("X-Test-System-Warning"); warning != "" {
			// TEST echoes this header as a technical warning, ASCII-folded.
			w.Header().Set("X-System-Warning", asciiFold(warning))
		}
		if auth != authNone && !q.authenticate(auth) {
			return
		}
		if !e.allowRequest(q, group) {
			return
		}
		if !q.authorize() { // the operation's x-required-permissions
			return
		}
		h(q)
	})
}

func (e *Emulator) routes() http.Handler {
	mux := http.NewServeMux()
	// Authentication (public group: 60 requests per second per IP).
	e.route(mux, "POST /auth/challenge", groupPublic, authNone, e.handleChallenge)
	e.route(mux, "POST /auth/ksef-token", groupPublic, authNone, e.handleKSeFToken)
	e.route(mux, "POST /auth/xades-signature", groupPublic, authNone, e.handleXAdES)
	e.route(mux, "GET /auth/{referenceNumber}", groupPublic, authOperation, e.handleAuthStatus)
	e.route(mux, "POST /auth/token/redeem", groupPublic, authOperation, e.handleRedeem)
	e.route(mux, "POST /auth/token/refresh", groupPublic, authRefresh, e.handleRefresh)
	e.route(mux, "GET /security/public-key-certificates", groupPublic, authNone, e.handlePublicKeys)
	// Authentication sessions.
	e.route(mux, "GET /auth/sessions", groupOther, authAccess, e.handleAuthSessions)
	e.route(mux, "DELETE /auth/sessions/current", groupOther, authAny, e.handleRevokeCurrent)
	e.route(mux, "DELETE /auth/sessions/{referenceNumber}", groupOther, authAccess, e.handleRevokeSession)
	// Online sessions and invoices.
	e.route(mux, "POST /sessions/online", groupOnlineSession, authAccess, e.handleOpenOnline)
	e.route(mux, "POST /sessions/online/{referenceNumber}/invoices", groupInvoiceSend, authAccess, e.handleSendInvoice)
	e.route(mux, "POST /sessions/online/{referenceNumber}/close", groupOnlineSession, authAccess, e.handleCloseOnline)
	// Batch sessions; their parts go to pre-signed upload links (no bearer, not rate-limited).
	e.route(mux, "POST /sessions/batch", groupBatchSession, authAccess, e.handleOpenBatch)
	e.route(mux, "POST /sessions/batch/{referenceNumber}/close", groupBatchSession, authAccess, e.handleCloseBatch)
	mux.HandleFunc(uploadPrefix+"{referenceNumber}/{ordinalNumber}", e.handleUpload)
	e.route(mux, "GET /sessions", groupSessionList, authAccess, e.handleListSessions)
	e.route(mux, "GET /sessions/{referenceNumber}", groupSessionMisc, authAccess, e.handleSessionStatus)
	e.route(mux, "GET /sessions/{referenceNumber}/invoices", groupSessionInvoiceList, authAccess, e.handleSessionInvoices)
	e.route(mux, "GET /sessions/{referenceNumber}/invoices/failed", groupSessionInvoiceList, authAccess, e.handleSessionFailedInvoices)
	e.route(mux, "GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}", groupInvoiceStatus, authAccess, e.handleInvoiceStatus)
	e.route(mux, "GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo", groupSessionMisc, authAccess, e.handleInvoiceUPO)
	e.route(mux, "GET /sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo", groupSessionMisc, authAccess, e.handleInvoiceUPOByKSeF)
	e.route(mux, "GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}", groupSessionMisc, authAccess, e.handleSessionUPO)
	e.route(mux, "GET /invoices/ksef/{ksefNumber}", groupInvoiceDownload, authAccess, e.handleDownloadInvoice)
	// Limits.
	e.route(mux, "GET /rate-limits", groupOther, authAccess, e.handleRateLimits)
	e.route(mux, "GET /limits/context", groupOther, authAccess, e.handleContextLimits)
	// KSeF tokens, permissions, KSeF certificates and GET /limits/subject.
	e.tokenRoutes(mux)
	e.permissionRoutes(mux)
	e.certificateRoutes(mux)
	// Pre-signed downloads (no bearer, not rate-limited) and the admin API.
	mux.HandleFunc("GET "+downloadPrefix+"{referenceNumber}/{kind}/{name}", e.handleDownload)
	e.adminRoutes(mux)
	return mux
}

// fail answers 400 with a KSeF exception.
func (q *request) fail(code int, details ...string) {
	q.e.writeAPIError(q.w, q.r, newAPIError(code, details...), q.now, q.trace, q.op)
}

// failWith answers 400 with err if it is an *apiError, 500 otherwise.
func (q *request) failWith(err error) {
	var a *apiError
	if errors.As(err, &a) {
		q.e.writeAPIError(q.w, q.r, a, q.now, q.trace, q.op)
		return
	}
	q.e.log.LogAttrs(q.r.Context(), levelDebug, "internal error", errAttr(err))
	writeProblem(q.w, q.r, http.StatusInternalServerError, "Internal Server Error", "Nieoczekiwany błąd emulatora.", q.now, nil)
}

func (q *request) json(status int, v any) {
	writeJSON(q.w, "application/json", status, v)
}

// xml answers 200 with an XML document and its Base64 SHA-256 in x-ms-meta-hash.
func (q *request) xml(doc []byte) {
	writeXML(q.w, doc)
}

func writeXML(w http.ResponseWriter, doc []byte) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-meta-hash", sha256Base64(doc))
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

func (q *request) noContent() { q.w.WriteHeader(http.StatusNoContent) }

// decodeJSON reads the JSON body into v; a body that is not JSON of the right shape gives 21405.
func (q *request) decodeJSON(v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, maxJSONBody))
	if err != nil {
		q.fail(codeValidation, "Nie można odczytać treści żądania: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		q.fail(codeValidation, "Treść żądania jest wymagana.")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		q.fail(codeValidation, "Nieprawidłowy format JSON: "+jsonErrorText(err))
		return false
	}
	return true
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("pole '%s' ma nieprawidłowy typ (oczekiwano %s)", te.Field, te.Type)
	}
	return err.Error()
}

// referenceParam returns the path parameter name if it has the length of a reference number;
// otherwise it answers 21405.
func (q *request) referenceParam(name string) (string, bool) {
	v := q.r.PathValue(name)
	if len(v) != 36 {
		q.fail(codeValidation, fmt.Sprintf("Parametr '%s' musi mieć 36 znaków.", name))
		return "", false
	}
	return v, true
}

var polishFold = strings.NewReplacer(
	"ą", "a", "ć", "c", "ę", "e", "ł", "l", "ń", "n", "ó", "o", "ś", "s", "ź", "z", "ż", "z",
	"Ą", "A", "Ć", "C", "Ę", "E", "Ł", "L", "Ń", "N", "Ó", "O", "Ś", "S", "Ź", "Z", "Ż", "Z",
)

// asciiFold replaces Polish letters by their ASCII base letters and drops other non-ASCII or
// control characters, as KSeF normalises X-System-Warning.
func asciiFold(s string) string {
	s = polishFold.Replace(s)
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E {
			return -1
		}
		return r
	}, s)
}
