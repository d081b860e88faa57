package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a kind of injected fault.
type FaultKind string

// Fault kinds.
const (
	// FaultHTTPError answers matching API requests with HTTP Status (500, 502, 503 or 504) and a
	// problem-details body, without touching any state.
	FaultHTTPError FaultKind = "httpError"
	// FaultLatency delays matching API requests by Latency (the wait ends early, and the request
	// is dropped, when the client gives up), then serves them normally.
	FaultLatency FaultKind = "latency"
	// FaultRateLimit answers matching API requests with 429 and Retry-After: RetryAfter (rounded
	// up to whole seconds, at least 1), in the documented body, whatever the rate limiter says.
	FaultRateLimit FaultKind = "rateLimit"
	// FaultStuckInvoices keeps accepted invoices in status 150 (processing) for ever; sessions
	// holding them stay in 170 after close. Matching is by NIP (context), not by path.
	FaultStuckInvoices FaultKind = "stuckInvoices"
	// FaultRejectInvoices gives accepted invoices the final status Status (any invoice status
	// code >= 400, e.g. 450 or 500) with Details. Matching is by NIP (context), not by path.
	FaultRejectInvoices FaultKind = "rejectInvoices"
)

// Fault is an injected failure. HTTP faults (httpError, latency, rateLimit) match API requests
// under /v2 by Method and Path; invoice faults (stuckInvoices, rejectInvoices) match invoices sent
// in the context NIP. Count is how many requests or invoices are affected, 0 meaning every one
// until the fault is cleared.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// Method matches the HTTP method; empty matches any.
	Method string `json:"method,omitempty"`
	// Path matches the request path below /v2 with [path.Match] ("/sessions/online/*/invoices");
	// empty matches any.
	Path string `json:"path,omitempty"`
	// NIP limits invoice faults to one context; empty matches any.
	NIP   string `json:"nip,omitempty"`
	Count int    `json:"count,omitempty"`
	// Status is the HTTP status of httpError, or the invoice status code of rejectInvoices.
	Status     int           `json:"status,omitempty"`
	Latency    time.Duration `json:"-"`
	RetryAfter time.Duration `json:"-"`
	// Details are the status details of rejectInvoices.
	Details []string `json:"details,omitempty"`
}

type jsonFault struct {
	alias
	Latency    string `json:"latency,omitempty"`
	RetryAfter string `json:"retryAfter,omitempty"`
}

type alias Fault

// MarshalJSON writes durations as strings ("250ms").
func (f Fault) MarshalJSON() ([]byte, error) {
	jf := jsonFault{alias: alias(f)}
	if f.Latency != 0 {
		jf.Latency = f.Latency.String()
	}
	if f.RetryAfter != 0 {
		jf.RetryAfter = f.RetryAfter.String()
	}
	return json.Marshal(jf)
}

// UnmarshalJSON reads durations written as strings ("250ms", "30s").
func (f *Fault) UnmarshalJSON(data []byte) error {
	var jf jsonFault
	if err := json.Unmarshal(data, &jf); err != nil {
		return err
	}
	*f = Fault(jf.alias)
	var err error
	if jf.Latency != "" {
		if f.Latency, err = time.ParseDuration(jf.Latency); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if jf.RetryAfter != "" {
		if f.RetryAfter, err = time.ParseDuration(jf.RetryAfter); err != nil {
			return fmt.Errorf("retryAfter: %w", err)
		}
	}
	return nil
}

func (f *Fault) validate() error {
	if f.Count < 0 {
		return errors.New("count is negative")
	}
	if f.Path != "" {
		if !strings.HasPrefix(f.Path, "/") {
			return fmt.Errorf("path %q does not start with /", f.Path)
		}
		if _, err := path.Match(f.Path, "/"); err != nil {
			return fmt.Errorf("path %q: %w", f.Path, err)
		}
	}
	if f.NIP != "" && !reNIP.MatchString(f.NIP) && !reInternalID.MatchString(f.NIP) {
		return fmt.Errorf("nip %q is not a NIP or InternalId", f.NIP)
	}
	switch f.Kind {
	case FaultHTTPError:
		switch f.Status {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		default:
			return fmt.Errorf("httpError status %d is not 500, 502, 503 or 504", f.Status)
		}
	case FaultLatency:
		if f.Latency <= 0 {
			return errors.New("latency must be positive")
		}
	case FaultRateLimit:
		if f.RetryAfter < 0 {
			return errors.New("retryAfter is negative")
		}
	case FaultStuckInvoices:
	case FaultRejectInvoices:
		if f.Status < 400 || f.Status > 599 {
			return fmt.Errorf("rejectInvoices status %d is not an invoice failure code (400-599)", f.Status)
		}
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	return nil
}

func (f *Fault) isHTTP() bool {
	return f.Kind == FaultHTTPError || f.Kind == FaultLatency || f.Kind == FaultRateLimit
}

// faultState is an active fault and how many more times it fires (-1: unlimited).
type faultState struct {
	Fault
	remaining int
}

func newFaultState(f Fault) *faultState {
	r := f.Count
	if r == 0 {
		r = -1
	}
	return &faultState{Fault: f, remaining: r}
}

func (fs *faultState) matchRequest(method, apiPath string) bool {
	if !fs.isHTTP() || fs.remaining == 0 {
		return false
	}
	if fs.Method != "" && !strings.EqualFold(fs.Method, method) {
		return false
	}
	if fs.Path != "" {
		ok, _ := path.Match(fs.Path, apiPath)
		return ok
	}
	return true
}

func (fs *faultState) matchInvoice(kind FaultKind, contextValue string) bool {
	return fs.Kind == kind && fs.remaining != 0 && (fs.NIP == "" || fs.NIP == contextValue)
}

func (fs *faultState) consume() {
	if fs.remaining > 0 {
		fs.remaining--
	}
}

// takeHTTPFaults returns the HTTP faults that fire for this request, consuming one use of each.
// At most one fault of each kind fires, the first one added.
func (e *Emulator) takeHTTPFaults(method, apiPath string) []Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	var fired []Fault
	seen := map[FaultKind]bool{}
	for _, fs := range e.faults {
		if seen[fs.Kind] || !fs.matchRequest(method, apiPath) {
			continue
		}
		seen[fs.Kind] = true
		fs.consume()
		fired = append(fired, fs.Fault)
	}
	e.dropSpentFaultsLocked()
	return fired
}

// takeInvoiceFaultLocked returns the first invoice fault of kind that applies to an invoice sent in the
// context, consuming one use. Called with e.mu held.
func (e *Emulator) takeInvoiceFaultLocked(kind FaultKind, contextValue string) (Fault, bool) {
	for _, fs := range e.faults {
		if fs.matchInvoice(kind, contextValue) {
			fs.consume()
			f := fs.Fault
			e.dropSpentFaultsLocked()
			return f, true
		}
	}
	return Fault{}, false
}

func (e *Emulator) dropSpentFaultsLocked() {
	kept := e.faults[:0]
	for _, fs := range e.faults {
		if fs.remaining != 0 {
			kept = append(kept, fs)
		}
	}
	clear(e.faults[len(kept):])
	e.faults = kept
}

// faultMiddleware applies HTTP faults to API requests.
func (e *Emulator) faultMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiPath, ok := strings.CutPrefix(r.URL.Path, apiPrefix)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		for _, f := range e.takeHTTPFaults(r.Method, apiPath) {
			switch f.Kind {
			case FaultLatency:
				if err := e.wait(r.Context(), f.Latency); err != nil {
					e.log.LogAttrs(r.Context(), levelDebug, "request abandoned during injected latency")
					markAbandoned(r)
					return
				}
			case FaultHTTPError:
				e.notifyFault(r)
				writeProblem(w, r, f.Status, http.StatusText(f.Status), "Błąd wstrzyknięty przez emulator (fault injection).", e.now(), nil)
				return
			case FaultRateLimit:
				e.notifyFault(r)
				secs := int((f.RetryAfter + time.Second - 1) / time.Second)
				secs = max(secs, 1)
				e.writeTooManyRequests(w, r, secs, "Przekroczono limit żądań (wymuszony przez emulator). Spróbuj ponownie po "+strconv.Itoa(secs)+" sekundach.")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// notifyFault tells the observer set with WithFaultObserver that r was answered by a fault.
func (e *Emulator) notifyFault(r *http.Request) {
	if e.faultObserver != nil {
		e.faultObserver(r)
	}
}
