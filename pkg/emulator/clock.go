package emulator

import (
	"context"
	"time"
	_ "time/tzdata" // Europe/Warsaw must resolve on hosts without a zoneinfo database
)

// warsaw is Polish time, in which KSeF dates its numbers and compares invoice issue dates.
var warsaw = mustLoadLocation("Europe/Warsaw")

func mustLoadLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic("emulator: " + err.Error()) // cannot happen: time/tzdata is linked in
	}
	return loc
}

// Clock tells the emulator the time. Every state transition (authentication 100 -> 200, invoice
// 100 -> 150 -> 200, session 170 -> 200, expiry of challenges, tokens, sessions and links) is
// computed from timestamps and this clock when a request arrives; the emulator runs no goroutines
// or timers, so a test with a fake clock never sleeps.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// waitContext waits for d or until ctx is done, whichever comes first.
func waitContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KSeF date-time layouts: 7 fractional digits and an explicit offset, as in the OpenAPI examples
// ("2025-07-11T12:23:56.0154302+00:00"), and milliseconds with the Polish offset in UPO documents
// ("2025-09-16T11:05:40.841+02:00").
const (
	layoutAPI = "2006-01-02T15:04:05.0000000-07:00"
	layoutUPO = "2006-01-02T15:04:05.000-07:00"
)

// apiTime is a date-time that marshals to JSON in KSeF's format, in UTC.
type apiTime time.Time

func (t apiTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(layoutAPI) + `"`), nil
}

// optTime returns a pointer for an optional date-time, nil for the zero time.
func optTime(t time.Time) *apiTime {
	if t.IsZero() {
		return nil
	}
	at := apiTime(t)
	return &at
}
