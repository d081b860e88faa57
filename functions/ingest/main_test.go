package main

import (
	"errors"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"KSEF_CREDENTIALS_SECRET": "c", "KSEF_STATE_SECRET": "s", "INVOICE_BUCKET": "b",
		"LEDGER_TABLE": "ledger", "STATE_MACHINE_ARN": "arn:aws:states:eu-central-1:123456789012:stateMachine:m", "KSEF_NIP": "5265877635",
	}
	tests := []struct {
		name    string
		unset   string
		wantErr error // nil: no error
	}{
		{name: "complete"},
		{name: "no ledger", unset: "LEDGER_TABLE", wantErr: errMissing},
		{name: "no state machine", unset: "STATE_MACHINE_ARN", wantErr: errMissing},
		{name: "no NIP", unset: "KSEF_NIP", wantErr: errMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == tt.unset {
					return ""
				}
				return base[k]
			}
			cfg, err := loadConfig(getenv)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("loadConfig without %s: error %v, want %v", tt.unset, err, tt.wantErr)
			}
			if err == nil && (cfg.LedgerTable != "ledger" || cfg.NIP != "5265877635") {
				t.Errorf("loadConfig = %+v, want the ledger table and NIP of the environment", cfg)
			}
		})
	}
	// A configuration lambdaenv.LoadConfig rejects is rejected with its error.
	if _, err := loadConfig(func(string) string { return "" }); err == nil || errors.Is(err, errMissing) {
		t.Errorf("loadConfig of an empty environment: error %v, want lambdaenv's", err)
	}
}
