package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// page is a position in a list paged with x-continuation-token.
type page struct {
	offset int
	size   int
}

type continuation struct {
	Offset int `json:"offset"`
}

// paging reads pageSize (default def, at least 10, at most maxSize) and the x-continuation-token
// header; a malformed token gives 21418 and a bad pageSize 21405.
func (q *request) paging(def, maxSize int) (page, bool) {
	p := page{size: def}
	if s := q.r.URL.Query().Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 || n > maxSize {
			q.fail(codeValidation, fmt.Sprintf("Parametr 'pageSize' musi być liczbą z zakresu 10-%d.", maxSize))
			return page{}, false
		}
		p.size = n
	}
	if tok := q.r.Header.Get("x-continuation-token"); tok != "" {
		raw, err := base64.StdEncoding.DecodeString(tok)
		var c continuation
		if err != nil || json.Unmarshal(raw, &c) != nil || c.Offset <= 0 {
			q.fail(codeBadContinuation)
			return page{}, false
		}
		p.offset = c.Offset
	}
	return p, true
}

// bounds returns the slice bounds of the page in a list of n items and the continuation token of
// the next page, empty on the last page.
func (p page) bounds(n int) (from, to int, next string) {
	from = min(p.offset, n)
	to = min(from+p.size, n)
	if to < n {
		b, _ := json.Marshal(continuation{Offset: to})
		next = base64.StdEncoding.EncodeToString(b)
	}
	return from, to, next
}
