package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Config describes an emulator. The zero value is usable: every zero duration or limit takes the
// default named on its field. Durations are never negative.
//
// A Config can also be read from JSON with [ParseConfig]; durations are then strings accepted by
// [time.ParseDuration] ("1.5s", "45m", "168h").
type Config struct {
	// Tokens maps a context identifier value (a NIP, or an InternalId "NIP-nnnnn") to the KSeF
	// tokens valid in that context. A token is an opaque string; KSeF-shaped tokens
	// ("<EC reference>|<context>|<hex>") are used as they are.
	Tokens map[string][]string `json:"tokens,omitempty"`

	// Grants maps a context identifier value to further subjects that may act in it after an
	// XAdES login: a NIP, a PESEL or the hex SHA-256 fingerprint of a certificate. The owner (the
	// subject whose NIP is the context NIP) may always act.
	Grants map[string][]string `json:"grants,omitempty"`

	AuthDelay       time.Duration `json:"-"` // authentication status 100 -> final (default 1s)
	AcceptDelay     time.Duration `json:"-"` // invoice status 100 -> 150 (default 500ms)
	ProcessingDelay time.Duration `json:"-"` // invoice status 150 -> final, session 170 -> final (default 1.5s)
	StorageDelay    time.Duration `json:"-"` // acquisitionDate -> permanentStorageDate (default 1s)

	ChallengeTTL     time.Duration `json:"-"` // default 10m
	AuthTokenTTL     time.Duration `json:"-"` // authentication (operation) token, default 45m
	AccessTokenTTL   time.Duration `json:"-"` // default 15m
	RefreshTokenTTL  time.Duration `json:"-"` // default 7 days
	OnlineSessionTTL time.Duration `json:"-"` // default 12h
	DownloadURLTTL   time.Duration `json:"-"` // pre-signed UPO links, default 3 days
	KeyOverlap       time.Duration `json:"-"` // planned key rotation: how long the old key stays listed, default 24h

	// RateLimits turns on the request limits of PROTOCOL §12.1 (sliding 1 s / 1 min / 1 h windows).
	RateLimits bool `json:"rateLimits,omitempty"`
	// RateLimitOverrides replaces the limits of some groups ("onlineSession", "invoiceSend",
	// "invoiceStatus", "sessionList", "sessionInvoiceList", "sessionMisc", "invoiceDownload",
	// "other", "public", ...). A zero field means no limit for that window.
	RateLimitOverrides map[string]Limit `json:"rateLimitOverrides,omitempty"`

	// MaxInvoicesPerSession is the session invoice limit (default 10 000; exceeding it gives 21155).
	MaxInvoicesPerSession int `json:"maxInvoicesPerSession,omitempty"`

	// ProblemDetailsByDefault answers 400 and 429 in problem-details format even without the
	// request header X-Error-Format: problem-details.
	ProblemDetailsByDefault bool `json:"problemDetailsByDefault,omitempty"`

	// EnvironmentName is "TE" (default, KSeF TEST), "TR" (DEMO) or "PRD"; it selects the name of
	// the receiving party in UPOs as each environment writes it.
	EnvironmentName string `json:"environmentName,omitempty"`

	// Faults are injected from the start; more can be added with [Emulator.AddFault].
	Faults []Fault `json:"faults,omitempty"`
}

// Limit is a request rate limit: at most PerSecond requests in any sliding second, PerMinute in
// any minute and PerHour in any hour. Zero means unlimited.
type Limit struct {
	PerSecond int `json:"perSecond"`
	PerMinute int `json:"perMinute"`
	PerHour   int `json:"perHour"`
}

// Defaults of Config.
const (
	DefaultAuthDelay        = time.Second
	DefaultAcceptDelay      = 500 * time.Millisecond
	DefaultProcessingDelay  = 1500 * time.Millisecond
	DefaultStorageDelay     = time.Second
	DefaultChallengeTTL     = 10 * time.Minute
	DefaultAuthTokenTTL     = 45 * time.Minute
	DefaultAccessTokenTTL   = 15 * time.Minute
	DefaultRefreshTokenTTL  = 7 * 24 * time.Hour
	DefaultOnlineSessionTTL = 12 * time.Hour
	DefaultDownloadURLTTL   = 72 * time.Hour
	DefaultKeyOverlap       = 24 * time.Hour
	DefaultMaxInvoices      = 10000
)

var (
	reNIP         = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}$`)
	reInternalID  = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}-\d{5}$`)
	rePESEL       = regexp.MustCompile(`^\d{11}$`)
	reNipVatUE    = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}-[A-Z]{2}[A-Z0-9+*]{2,12}$`)
	rePeppolID    = regexp.MustCompile(`^P[A-Z]{2}\d{6}$`)
	reFingerprint = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)
)

// withDefaults returns a copy of c with defaults filled in and maps copied, or an error naming the
// first invalid field.
func (c Config) withDefaults() (Config, error) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"authDelay", &c.AuthDelay, DefaultAuthDelay},
		{"acceptDelay", &c.AcceptDelay, DefaultAcceptDelay},
		{"processingDelay", &c.ProcessingDelay, DefaultProcessingDelay},
		{"storageDelay", &c.StorageDelay, DefaultStorageDelay},
		{"challengeTTL", &c.ChallengeTTL, DefaultChallengeTTL},
		{"authTokenTTL", &c.AuthTokenTTL, DefaultAuthTokenTTL},
		{"accessTokenTTL", &c.AccessTokenTTL, DefaultAccessTokenTTL},
		{"refreshTokenTTL", &c.RefreshTokenTTL, DefaultRefreshTokenTTL},
		{"onlineSessionTTL", &c.OnlineSessionTTL, DefaultOnlineSessionTTL},
		{"downloadURLTTL", &c.DownloadURLTTL, DefaultDownloadURLTTL},
		{"keyOverlap", &c.KeyOverlap, DefaultKeyOverlap},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			return c, fmt.Errorf("emulator: config %s is negative", d.name)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if c.MaxInvoicesPerSession < 0 {
		return c, errors.New("emulator: config maxInvoicesPerSession is negative")
	}
	if c.MaxInvoicesPerSession == 0 {
		c.MaxInvoicesPerSession = DefaultMaxInvoices
	}
	switch c.EnvironmentName {
	case "":
		c.EnvironmentName = "TE"
	case "TE", "TR", "PRD":
	default:
		return c, fmt.Errorf("emulator: config environmentName %q is not TE, TR or PRD", c.EnvironmentName)
	}
	for ctx, tokens := range c.Tokens {
		if !reNIP.MatchString(ctx) && !reInternalID.MatchString(ctx) {
			return c, fmt.Errorf("emulator: config tokens: %q is not a NIP or InternalId", ctx)
		}
		for _, t := range tokens {
			if t == "" || len(t) > 160 {
				return c, fmt.Errorf("emulator: config tokens for %s: a token must have 1-160 characters", ctx)
			}
		}
	}
	for ctx, subjects := range c.Grants {
		for _, s := range subjects {
			if !reNIP.MatchString(s) && !rePESEL.MatchString(s) && !reFingerprint.MatchString(s) {
				return c, fmt.Errorf("emulator: config grants for %s: %q is not a NIP, PESEL or SHA-256 fingerprint", ctx, s)
			}
		}
	}
	for group, l := range c.RateLimitOverrides {
		if _, ok := defaultRateLimits[group]; !ok {
			return c, fmt.Errorf("emulator: config rateLimitOverrides: unknown group %q", group)
		}
		if l.PerSecond < 0 || l.PerMinute < 0 || l.PerHour < 0 {
			return c, fmt.Errorf("emulator: config rateLimitOverrides[%s]: negative limit", group)
		}
	}
	for i := range c.Faults {
		if err := c.Faults[i].validate(); err != nil {
			return c, fmt.Errorf("emulator: config faults[%d]: %w", i, err)
		}
	}
	c.Tokens = cloneLists(c.Tokens)
	c.Grants = cloneLists(c.Grants)
	c.RateLimitOverrides = maps.Clone(c.RateLimitOverrides)
	c.Faults = slices.Clone(c.Faults)
	return c, nil
}

func cloneLists(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// jsonConfig is the JSON form of Config: durations as strings.
type jsonConfig struct {
	Config
	AuthDelay        string `json:"authDelay"`
	AcceptDelay      string `json:"acceptDelay"`
	ProcessingDelay  string `json:"processingDelay"`
	StorageDelay     string `json:"storageDelay"`
	ChallengeTTL     string `json:"challengeTTL"`
	AuthTokenTTL     string `json:"authTokenTTL"`
	AccessTokenTTL   string `json:"accessTokenTTL"`
	RefreshTokenTTL  string `json:"refreshTokenTTL"`
	OnlineSessionTTL string `json:"onlineSessionTTL"`
	DownloadURLTTL   string `json:"downloadURLTTL"`
	KeyOverlap       string `json:"keyOverlap"`
}

// ParseConfig reads a Config from JSON. Unknown fields are an error, so that a misspelt option is
// not silently ignored. Example:
//
//	{"tokens": {"5265877635": ["my-token"]}, "authDelay": "200ms", "rateLimits": true,
//	 "faults": [{"kind": "httpError", "method": "POST", "path": "/sessions/online", "status": 503, "count": 1}]}
func ParseConfig(r io.Reader) (Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("emulator: read config: %w", err)
	}
	var jc jsonConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jc); err != nil {
		return Config{}, fmt.Errorf("emulator: decode config: %w", err)
	}
	c := jc.Config
	fields := []struct {
		name string
		s    string
		v    *time.Duration
	}{
		{"authDelay", jc.AuthDelay, &c.AuthDelay},
		{"acceptDelay", jc.AcceptDelay, &c.AcceptDelay},
		{"processingDelay", jc.ProcessingDelay, &c.ProcessingDelay},
		{"storageDelay", jc.StorageDelay, &c.StorageDelay},
		{"challengeTTL", jc.ChallengeTTL, &c.ChallengeTTL},
		{"authTokenTTL", jc.AuthTokenTTL, &c.AuthTokenTTL},
		{"accessTokenTTL", jc.AccessTokenTTL, &c.AccessTokenTTL},
		{"refreshTokenTTL", jc.RefreshTokenTTL, &c.RefreshTokenTTL},
		{"onlineSessionTTL", jc.OnlineSessionTTL, &c.OnlineSessionTTL},
		{"downloadURLTTL", jc.DownloadURLTTL, &c.DownloadURLTTL},
		{"keyOverlap", jc.KeyOverlap, &c.KeyOverlap},
	}
	for _, f := range fields {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil {
			return Config{}, fmt.Errorf("emulator: config %s: %w", f.name, err)
		}
		*f.v = d
	}
	if _, err := c.withDefaults(); err != nil {
		return Config{}, err
	}
	return c, nil
}
