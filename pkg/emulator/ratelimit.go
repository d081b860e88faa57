package emulator

import (
	"fmt"
	"net/http"
	"time"
)

// Rate-limit groups of PROTOCOL §12.1 (the names GET /rate-limits uses).
const (
	groupOnlineSession      = "onlineSession"
	groupBatchSession       = "batchSession"
	groupInvoiceSend        = "invoiceSend"
	groupInvoiceStatus      = "invoiceStatus"
	groupSessionList        = "sessionList"
	groupSessionInvoiceList = "sessionInvoiceList"
	groupSessionMisc        = "sessionMisc"
	groupInvoiceMetadata    = "invoiceMetadata"
	groupInvoiceExport      = "invoiceExport"
	groupInvoiceExportStat  = "invoiceExportStatus"
	groupInvoiceDownload    = "invoiceDownload"
	groupOther              = "other"
	groupPublic             = "public" // unauthenticated endpoints, counted per IP
)

var defaultRateLimits = map[string]Limit{
	groupOnlineSession:      {10, 30, 120},
	groupBatchSession:       {10, 20, 60},
	groupInvoiceSend:        {10, 30, 180},
	groupInvoiceStatus:      {30, 120, 1200},
	groupSessionList:        {5, 10, 60},
	groupSessionInvoiceList: {10, 20, 200},
	groupSessionMisc:        {10, 120, 1200},
	groupInvoiceMetadata:    {8, 16, 20},
	groupInvoiceExport:      {8, 16, 20},
	groupInvoiceExportStat:  {10, 60, 600},
	groupInvoiceDownload:    {8, 16, 64},
	groupOther:              {10, 30, 120},
	groupPublic:             {60, 0, 0},
}

// limit returns the limit in force for a group.
func (e *Emulator) limit(group string) Limit {
	if l, ok := e.cfg.RateLimitOverrides[group]; ok {
		return l
	}
	return defaultRateLimits[group]
}

// rateLimiter keeps, per counter, the times of the requests of the last hour.
type rateLimiter struct {
	hits map[string][]time.Time
}

func newRateLimiter() *rateLimiter { return &rateLimiter{hits: map[string][]time.Time{}} }

var windows = []struct {
	d    time.Duration
	noun string
	per  func(Limit) int
}{
	{time.Second, "sekundę", func(l Limit) int { return l.PerSecond }},
	{time.Minute, "minutę", func(l Limit) int { return l.PerMinute }},
	{time.Hour, "godzinę", func(l Limit) int { return l.PerHour }},
}

// take records a request at now against key if none of the sliding windows of l is full.
// Otherwise it returns how long until the fullest window frees a slot, and its description.
func (rl *rateLimiter) take(key string, l Limit, now time.Time) (retry time.Duration, detail string, ok bool) {
	hits := rl.hits[key]
	// Forget what left the longest window.
	i := 0
	for i < len(hits) && !now.Before(hits[i].Add(time.Hour)) {
		i++
	}
	hits = hits[i:]
	for _, w := range windows {
		limit := w.per(l)
		if limit <= 0 {
			continue
		}
		start := now.Add(-w.d)
		n := 0
		first := -1
		for j := len(hits) - 1; j >= 0 && hits[j].After(start); j-- {
			n++
			first = j
		}
		if n >= limit {
			// The window frees a slot when the oldest of its last `limit` requests leaves it.
			oldest := hits[first+n-limit]
			wait := oldest.Add(w.d).Sub(now)
			if wait > retry {
				retry = wait
				detail = fmt.Sprintf("Przekroczono limit %d żądań na %s.", limit, w.noun)
			}
		}
	}
	if retry > 0 {
		rl.hits[key] = hits
		return retry, detail, false
	}
	rl.hits[key] = append(hits, now)
	return 0, "", true
}

// allowRequest applies the rate limits of group to the request; when a limit is exceeded it
// answers 429 with Retry-After and returns false. Protected endpoints are counted per context
// and client IP, public ones per IP; "other" and "public" endpoints each have their own counter.
func (e *Emulator) allowRequest(q *request, group string) bool {
	if !e.cfg.RateLimits {
		return true
	}
	key := group + "|" + q.ip
	if q.claims != nil && group != groupPublic {
		key += "|" + q.claims.ContextType + ":" + q.claims.ContextValue
	}
	if group == groupOther || group == groupPublic {
		key += "|" + q.pattern
	}
	e.mu.Lock()
	retry, detail, ok := e.st.limiter.take(key, e.limit(group), q.now)
	e.mu.Unlock()
	if ok {
		return true
	}
	secs := int((retry + time.Second - 1) / time.Second)
	e.writeTooManyRequests(q.w, q.r, secs, fmt.Sprintf("%s Spróbuj ponownie po %d sekundach.", detail, secs))
	return false
}

type rateLimitValues struct {
	PerSecond int `json:"perSecond"`
	PerMinute int `json:"perMinute"`
	PerHour   int `json:"perHour"`
}

// GET /rate-limits: the limits in force, by group.
func (e *Emulator) handleRateLimits(q *request) {
	out := map[string]rateLimitValues{}
	for group := range defaultRateLimits {
		if group == groupPublic {
			continue // not part of EffectiveApiRateLimits
		}
		l := e.limit(group)
		out[group] = rateLimitValues(l)
	}
	q.json(http.StatusOK, out)
}

type sessionLimits struct {
	MaxInvoiceSizeInMB               int `json:"maxInvoiceSizeInMB"`
	MaxInvoiceWithAttachmentSizeInMB int `json:"maxInvoiceWithAttachmentSizeInMB"`
	MaxInvoices                      int `json:"maxInvoices"`
}

// GET /limits/context
func (e *Emulator) handleContextLimits(q *request) {
	l := sessionLimits{
		MaxInvoiceSizeInMB:               maxInvoiceSize / 1_000_000,
		MaxInvoiceWithAttachmentSizeInMB: maxInvoiceWithAttachmentSize / 1_000_000,
		MaxInvoices:                      e.cfg.MaxInvoicesPerSession,
	}
	q.json(http.StatusOK, map[string]sessionLimits{"onlineSession": l, "batchSession": l})
}
