package emulator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
)

func TestParseConfig(t *testing.T) {
	cfg, err := emulator.ParseConfig(strings.NewReader(`{
		"tokens": {"5265877635": ["tok-a"], "5265877635-00001": ["tok-b"]},
		"grants": {"5265877635": ["90010112345"]},
		"authDelay": "200ms", "acceptDelay": "1s", "processingDelay": "2s", "onlineSessionTTL": "1h",
		"rateLimits": true, "rateLimitOverrides": {"invoiceSend": {"perSecond": 2, "perMinute": 5, "perHour": 0}},
		"maxInvoicesPerSession": 50, "problemDetailsByDefault": true, "environmentName": "PRD",
		"faults": [{"kind": "latency", "latency": "1.5s", "count": 3}, {"kind": "rateLimit", "retryAfter": "30s"}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AuthDelay != 200*time.Millisecond || cfg.AcceptDelay != time.Second || cfg.ProcessingDelay != 2*time.Second || cfg.OnlineSessionTTL != time.Hour {
		t.Errorf("durations %v %v %v %v", cfg.AuthDelay, cfg.AcceptDelay, cfg.ProcessingDelay, cfg.OnlineSessionTTL)
	}
	if !cfg.RateLimits || cfg.RateLimitOverrides["invoiceSend"].PerMinute != 5 || cfg.MaxInvoicesPerSession != 50 ||
		!cfg.ProblemDetailsByDefault || cfg.EnvironmentName != "PRD" || cfg.Tokens["5265877635-00001"][0] != "tok-b" {
		t.Errorf("config %+v", cfg)
	}
	if len(cfg.Faults) != 2 || cfg.Faults[0].Latency != 1500*time.Millisecond || cfg.Faults[1].RetryAfter != 30*time.Second {
		t.Errorf("faults %+v", cfg.Faults)
	}
	if _, err := emulator.New(cfg); err != nil {
		t.Errorf("New with the parsed config: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"unknown field", `{"tokenz": {}}`, "tokenz"},
		{"bad duration", `{"authDelay": "soon"}`, "authDelay"},
		{"negative duration", `{"accessTokenTTL": "-1m"}`, "accessTokenTTL"},
		{"bad context", `{"tokens": {"123": ["t"]}}`, "123"},
		{"empty token", `{"tokens": {"5265877635": [""]}}`, "token"},
		{"bad grant", `{"grants": {"5265877635": ["someone"]}}`, "someone"},
		{"unknown group", `{"rateLimitOverrides": {"everything": {"perSecond": 1}}}`, "everything"},
		{"unknown fault", `{"faults": [{"kind": "meteor"}]}`, "meteor"},
		{"bad fault status", `{"faults": [{"kind": "httpError", "status": 404}]}`, "404"},
		{"bad fault path", `{"faults": [{"kind": "httpError", "status": 500, "path": "sessions"}]}`, "sessions"},
		{"bad fault latency", `{"faults": [{"kind": "latency", "latency": "x"}]}`, "latency"},
		{"unknown environment", `{"environmentName": "DEV"}`, "DEV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := emulator.ParseConfig(strings.NewReader(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseConfig(%s): error %v, want one mentioning %q", tt.json, err, tt.want)
			}
		})
	}
	if _, err := emulator.New(emulator.Config{ChallengeTTL: -time.Second}); err == nil {
		t.Error("New accepted a negative ChallengeTTL")
	}
}

func TestFaultJSONRoundTrip(t *testing.T) {
	f := emulator.Fault{Kind: emulator.FaultLatency, Method: "GET", Path: "/sessions/*", Latency: 250 * time.Millisecond, Count: 2}
	b, err := f.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency":"250ms"`) {
		t.Errorf("marshalled %s", b)
	}
	var back emulator.Fault
	if err := back.UnmarshalJSON(b); err != nil || back.Latency != f.Latency || back.Path != f.Path || back.Count != 2 {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}
