package emulator

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

const adminPrefix = "/admin"

// adminRoutes registers the admin API (see the package documentation). It is outside /v2, takes
// and returns JSON, needs no token and is neither rate-limited nor subject to faults.
func (e *Emulator) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+adminPrefix+"/faults", e.adminListFaults)
	mux.HandleFunc("POST "+adminPrefix+"/faults", e.adminAddFault)
	mux.HandleFunc("DELETE "+adminPrefix+"/faults", e.adminClearFaults)
	mux.HandleFunc("POST "+adminPrefix+"/tokens", e.adminAddToken)
	mux.HandleFunc("POST "+adminPrefix+"/rotate-keys", e.adminRotateKeys)
	mux.HandleFunc("GET "+adminPrefix+"/clock", e.adminClock)
	mux.HandleFunc("POST "+adminPrefix+"/clock", e.adminAdvance)
	mux.HandleFunc("POST "+adminPrefix+"/expire-access-tokens", e.adminExpireTokens)
	mux.HandleFunc("POST "+adminPrefix+"/expire-sessions", e.adminExpireSessions)
	mux.HandleFunc("POST "+adminPrefix+"/reset", e.adminReset)
}

type adminError struct {
	Error string `json:"error"`
}

func adminFail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, "application/json", status, adminError{Error: msg})
}

// readAdmin decodes an optional JSON body into v (an empty body leaves v as it is).
func readAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		adminFail(w, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if len(body) == 0 {
		return true
	}
	if err := json.Unmarshal(body, v); err != nil {
		adminFail(w, http.StatusBadRequest, "decode body: "+err.Error())
		return false
	}
	return true
}

// GET /admin/faults -> {"faults": [Fault...]}
func (e *Emulator) adminListFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, "application/json", http.StatusOK, map[string][]Fault{"faults": e.Faults()})
}

// POST /admin/faults {Fault} -> 201 {Fault}
func (e *Emulator) adminAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if !readAdmin(w, r, &f) {
		return
	}
	if err := e.AddFault(f); err != nil {
		adminFail(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, "application/json", http.StatusCreated, f)
}

// DELETE /admin/faults -> 204
func (e *Emulator) adminClearFaults(w http.ResponseWriter, _ *http.Request) {
	e.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

type adminToken struct {
	NIP   string `json:"nip"`
	Token string `json:"token,omitempty"`
}

// POST /admin/tokens {"nip": "...", "token": "..."} -> 201 {"nip", "token"}; without "token" a
// KSeF-shaped token is generated and returned.
func (e *Emulator) adminAddToken(w http.ResponseWriter, r *http.Request) {
	var t adminToken
	if !readAdmin(w, r, &t) {
		return
	}
	var err error
	if t.Token == "" {
		t.Token, err = e.GenerateToken(t.NIP)
	} else {
		err = e.AddToken(t.NIP, t.Token)
	}
	if err != nil {
		adminFail(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, "application/json", http.StatusCreated, t)
}

// POST /admin/rotate-keys {"emergency": bool} -> 204
func (e *Emulator) adminRotateKeys(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Emergency bool `json:"emergency"`
	}
	if !readAdmin(w, r, &req) {
		return
	}
	if err := e.RotateKeys(req.Emergency); err != nil {
		adminFail(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type adminClockResponse struct {
	Now    apiTime `json:"now"`
	Offset string  `json:"offset"`
}

func (e *Emulator) clockResponse() adminClockResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return adminClockResponse{Now: apiTime(e.nowLocked()), Offset: e.offset.String()}
}

// GET /admin/clock -> {"now", "offset"}
func (e *Emulator) adminClock(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, "application/json", http.StatusOK, e.clockResponse())
}

// POST /admin/clock {"advance": "90s"} -> {"now", "offset"}
func (e *Emulator) adminAdvance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Advance string `json:"advance"`
	}
	if !readAdmin(w, r, &req) {
		return
	}
	d, err := time.ParseDuration(req.Advance)
	if err == nil && d < 0 {
		err = errors.New("the clock only moves forward")
	}
	if err != nil {
		adminFail(w, http.StatusBadRequest, "advance: "+err.Error())
		return
	}
	e.Advance(d)
	writeJSON(w, "application/json", http.StatusOK, e.clockResponse())
}

type adminNIP struct {
	NIP string `json:"nip"`
}

type adminCount struct {
	Expired int `json:"expired"`
}

// POST /admin/expire-access-tokens {"nip": "..."} -> {"expired": n}
func (e *Emulator) adminExpireTokens(w http.ResponseWriter, r *http.Request) {
	var req adminNIP
	if !readAdmin(w, r, &req) {
		return
	}
	if req.NIP == "" {
		adminFail(w, http.StatusBadRequest, "nip is required")
		return
	}
	writeJSON(w, "application/json", http.StatusOK, adminCount{Expired: e.ExpireAccessTokens(req.NIP)})
}

// POST /admin/expire-sessions {"nip": "..."} -> {"expired": n}
func (e *Emulator) adminExpireSessions(w http.ResponseWriter, r *http.Request) {
	var req adminNIP
	if !readAdmin(w, r, &req) {
		return
	}
	if req.NIP == "" {
		adminFail(w, http.StatusBadRequest, "nip is required")
		return
	}
	writeJSON(w, "application/json", http.StatusOK, adminCount{Expired: e.ExpireSessions(req.NIP)})
}

// POST /admin/reset -> 204
func (e *Emulator) adminReset(w http.ResponseWriter, _ *http.Request) {
	e.Reset()
	w.WriteHeader(http.StatusNoContent)
}
