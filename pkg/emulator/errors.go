package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Exception codes (HTTP 400) and their descriptions, as the official OpenAPI description lists
// them per endpoint.
const (
	codeInvalidDocument       = 9101
	codeNoSignature           = 9102
	codeTooManySignatures     = 9103
	codeInvalidSignature      = 9105
	codeUnreadableContent     = 21001
	codeInvalidChallenge      = 21111
	codeInvalidCertificate    = 21115
	codeSessionInvoiceLimit   = 21155
	codeBatchPartSize         = 21157
	codeBatchTooManyParts     = 21161
	codeInvoiceNotFound       = 21164
	codeInvoiceNotReady       = 21165
	codeSessionNotFound       = 21173
	codeUPONotFound           = 21178
	codeSessionStatus         = 21180
	codeBatchPackageEmpty     = 21205
	codeBatchTimeout          = 21208
	codeInvalidEncoding       = 21217
	codeNoAuthorization       = 21301
	codeAuthNotFound          = 21304
	codeSchemaInvalid         = 21401
	codeSizeMismatch          = 21402
	codeHashMismatch          = 21403
	codeValidation            = 21405
	codeSignatureTypeConflict = 21406
	codeBadContinuation       = 21418
	codeUnknownKey            = 21470

	// KSeF certificates and tokens.
	codeCSRDataUnavailable      = 25001
	codeEnrollmentNotAllowed    = 25002
	codeCSRDataMismatch         = 25003
	codeCSRInvalid              = 25004
	codeEnrollmentNotFound      = 25005
	codeEnrollmentLimit         = 25006
	codeCertificateLimit        = 25007
	codeCertificateNotFound     = 25008
	codeCertificateNotRevocable = 25009
	codeCSRKey                  = 25010
	codeCSRSignatureAlgorithm   = 25011
	codeTokenPermissions        = 26001
	codeTokenContextType        = 26002
)

var exceptionDescriptions = map[int]string{
	codeInvalidDocument:       "Nieprawidłowy dokument.",
	codeNoSignature:           "Brak podpisu.",
	codeTooManySignatures:     "Przekroczona liczba dozwolonych podpisów.",
	codeInvalidSignature:      "Nieprawidłowy podpis.",
	codeUnreadableContent:     "Nieczytelna treść.",
	codeInvalidChallenge:      "Nieprawidłowe wyzwanie autoryzacyjne.",
	codeInvalidCertificate:    "Nieprawidłowy certyfikat.",
	codeSessionInvoiceLimit:   "Przekroczono dozwoloną liczbę faktur w sesji.",
	codeBatchPartSize:         "Nieprawidłowy rozmiar części pakietu.",
	codeBatchTooManyParts:     "Przekroczono dozwoloną liczbę części pakietu.",
	codeInvoiceNotFound:       "Faktura o podanym identyfikatorze nie istnieje.",
	codeInvoiceNotReady:       "Faktura o podanym numerze KSeF nie jest jeszcze dostępna.",
	codeSessionNotFound:       "Brak sesji o wskazanym numerze referencyjnym.",
	codeUPONotFound:           "Nie znaleziono UPO dla podanych kryteriów.",
	codeSessionStatus:         "Status sesji nie pozwala na wykonanie operacji.",
	codeBatchPackageEmpty:     "Pakiet nie może być pusty.",
	codeBatchTimeout:          "Czas oczekiwania na requesty upload lub finish został przekroczony.",
	codeInvalidEncoding:       "Nieprawidłowe kodowanie znaków.",
	codeNoAuthorization:       "Brak autoryzacji.",
	codeAuthNotFound:          "Brak uwierzytelnienia.",
	codeSchemaInvalid:         "Dokument nie jest zgodny ze schemą (xsd).",
	codeSizeMismatch:          "Nieprawidłowy rozmiar pliku.",
	codeHashMismatch:          "Nieprawidłowy skrót pliku.",
	codeValidation:            "Błąd walidacji danych wejściowych.",
	codeSignatureTypeConflict: "Konflikt podpisu i typu uwierzytelnienia.",
	codeBadContinuation:       "Przekazany token kontynuacji ma nieprawidłowy format.",
	codeUnknownKey:            "Przesłany identyfikator klucza jest nieznany lub wskazuje na wycofany klucz.",

	codeCSRDataUnavailable:      "Brak możliwości pobrania danych do CSR dla wykorzystanego sposobu uwierzytelnienia.",
	codeEnrollmentNotAllowed:    "Brak możliwości złożenia wniosku certyfikacyjnego dla wykorzystanego sposobu uwierzytelnienia.",
	codeCSRDataMismatch:         "Dane w CSR nie zgadzają się z danymi w użytym wektorze uwierzytelniającym.",
	codeCSRInvalid:              "Niepoprawny format CSR lub niepoprawny podpis CSR.",
	codeEnrollmentNotFound:      "Wniosek certyfikacyjny o podanym numerze referencyjnym nie istnieje.",
	codeEnrollmentLimit:         "Osiągnięto limit możliwych do złożenia wniosków certyfikacyjnych.",
	codeCertificateLimit:        "Osiągnięto limit dopuszczalnej liczby posiadanych certyfikatów.",
	codeCertificateNotFound:     "Certyfikat o podanym numerze seryjnym nie istnieje.",
	codeCertificateNotRevocable: "Nie można odwołać wskazanego certyfikatu, ponieważ jest już odwołany, zablokowany lub nieważny.",
	codeCSRKey:                  "Nieprawidłowy typ lub długość klucza.",
	codeCSRSignatureAlgorithm:   "Nieprawidłowy algorytm podpisu CSR.",
	codeTokenPermissions:        "Nie można nadać tokenowi uprawnień których nie posiadasz.",
	codeTokenContextType:        "Nie można wygenerować tokena dla obecnego typu kontekstu.",
}

// apiError is a 400 answer: one exception code with its details.
type apiError struct {
	code    int
	details []string
}

func (a *apiError) Error() string {
	return "ksef exception " + strconv.Itoa(a.code) + ": " + strings.Join(a.details, "; ")
}

func newAPIError(code int, details ...string) *apiError {
	return &apiError{code: code, details: details}
}

type exceptionDetail struct {
	ExceptionCode        int      `json:"exceptionCode"`
	ExceptionDescription string   `json:"exceptionDescription"`
	Details              []string `json:"details,omitempty"`
}

type exceptionInfo struct {
	ExceptionDetailList []exceptionDetail `json:"exceptionDetailList"`
	ReferenceNumber     string            `json:"referenceNumber"`
	ServiceCode         string            `json:"serviceCode"`
	ServiceCtx          string            `json:"serviceCtx"`
	ServiceName         string            `json:"serviceName"`
	Timestamp           apiTime           `json:"timestamp"`
}

type apiErrorEntry struct {
	Code        int      `json:"code"`
	Description string   `json:"description"`
	Details     []string `json:"details,omitempty"`
}

type badRequestProblem struct {
	Title     string          `json:"title"`
	Status    int             `json:"status"`
	Instance  string          `json:"instance"`
	Detail    string          `json:"detail"`
	Errors    []apiErrorEntry `json:"errors"`
	Timestamp apiTime         `json:"timestamp"`
	TraceID   string          `json:"traceId"`
}

// wantsProblem reports whether errors go out as problem details: the request asked with
// X-Error-Format: problem-details, or the emulator does so by default.
func (e *Emulator) wantsProblem(r *http.Request) bool {
	return e.cfg.ProblemDetailsByDefault || strings.EqualFold(r.Header.Get("X-Error-Format"), "problem-details")
}

// writeAPIError answers 400 in the format the request asked for.
func (e *Emulator) writeAPIError(w http.ResponseWriter, r *http.Request, a *apiError, now time.Time, trace, operation string) {
	if e.wantsProblem(r) {
		writeJSON(w, "application/problem+json", http.StatusBadRequest, badRequestProblem{
			Title:     "Bad Request",
			Status:    http.StatusBadRequest,
			Instance:  r.URL.Path,
			Detail:    "Żądanie jest nieprawidłowe.",
			Errors:    []apiErrorEntry{{Code: a.code, Description: exceptionDescriptions[a.code], Details: a.details}},
			Timestamp: apiTime(now),
			TraceID:   trace,
		})
		return
	}
	writeJSON(w, "application/json", http.StatusBadRequest, map[string]exceptionInfo{"exception": {
		ExceptionDetailList: []exceptionDetail{{ExceptionCode: a.code, ExceptionDescription: exceptionDescriptions[a.code], Details: a.details}},
		ReferenceNumber:     uuidFromTrace(trace),
		ServiceCode:         "00-" + trace + "-" + trace[:16] + "-00",
		ServiceCtx:          "srvKSEFEMU",
		ServiceName:         operation,
		Timestamp:           apiTime(now),
	}})
}

// uuidFromTrace formats 32 hex characters as a UUID (36 characters), the shape of the
// referenceNumber of KSeF exception bodies.
func uuidFromTrace(t string) string {
	return t[:8] + "-" + t[8:12] + "-" + t[12:16] + "-" + t[16:20] + "-" + t[20:32]
}

// problem is an RFC 7807 body of 401, 403, 410 and 5xx answers (always problem+json).
type problem struct {
	Title      string         `json:"title"`
	Status     int            `json:"status"`
	Detail     string         `json:"detail"`
	Instance   string         `json:"instance"`
	ReasonCode string         `json:"reasonCode,omitempty"`
	Security   map[string]any `json:"security,omitempty"`
	Timestamp  apiTime        `json:"timestamp"`
	TraceID    string         `json:"traceId"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string, now time.Time, extra func(*problem)) {
	p := problem{Title: title, Status: status, Detail: detail, Instance: r.URL.Path, Timestamp: apiTime(now), TraceID: newTraceID()}
	if extra != nil {
		extra(&p)
	}
	writeJSON(w, "application/problem+json", status, p)
}

type tooManyRequestsStatus struct {
	Code        int      `json:"code"`
	Description string   `json:"description"`
	Details     []string `json:"details"`
}

type tooManyRequestsProblem struct {
	Title     string  `json:"title"`
	Status    int     `json:"status"`
	Instance  string  `json:"instance"`
	Detail    string  `json:"detail"`
	Timestamp apiTime `json:"timestamp"`
	TraceID   string  `json:"traceId"`
}

// writeTooManyRequests answers 429 with Retry-After in seconds, in the format the request asked
// for.
func (e *Emulator) writeTooManyRequests(w http.ResponseWriter, r *http.Request, retryAfter int, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	if e.wantsProblem(r) {
		writeJSON(w, "application/problem+json", http.StatusTooManyRequests, tooManyRequestsProblem{
			Title:     "Too Many Requests",
			Status:    http.StatusTooManyRequests,
			Instance:  r.URL.Path,
			Detail:    detail,
			Timestamp: apiTime(e.now()),
			TraceID:   newTraceID(),
		})
		return
	}
	writeJSON(w, "application/json", http.StatusTooManyRequests, map[string]tooManyRequestsStatus{"status": {
		Code:        http.StatusTooManyRequests,
		Description: "Too Many Requests",
		Details:     []string{detail},
	}})
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value passed here is built by the emulator from plain types.
		http.Error(w, "emulator: encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType+"; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
