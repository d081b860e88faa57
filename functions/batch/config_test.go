package main

import (
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"KSEF_CREDENTIALS_SECRET": "ksef/{nip}/credentials", "KSEF_STATE_SECRET": "ksef/{nip}/session",
		"INVOICE_BUCKET": "invoices", "LEDGER_TABLE": "ledger", "KSEF_NIP": nip,
	}
	env := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchPrefix != "batch/" || c.ManifestPrefix != "batch/manifests/" || c.MaxInvoices != 10_000 || c.MaxBytes != 800_000_000 ||
		c.SessionInvoices != 10_000 || c.PageSize != 1000 || c.Workers != 16 || c.Bucket != "invoices" || c.ResultPrefix != "results/" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(env(map[string]string{"BATCH_PREFIX": "wsad", "BATCH_MAX_INVOICES": "500", "BATCH_MAX_BYTES": "3000000", "BATCH_SESSION_INVOICES": "250"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchPrefix != "wsad/" || c.ManifestPrefix != "wsad/manifests/" || c.MaxInvoices != 500 || c.MaxBytes != 3_000_000 || c.SessionInvoices != 250 {
		t.Errorf("set: %+v", c)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"inside the inbox", map[string]string{"BATCH_PREFIX": "inbox/batch/"}, "BATCH_PREFIX \"inbox/batch/\" and INBOX_PREFIX"},
		{"the results", map[string]string{"BATCH_PREFIX": "results/"}, "and RESULT_PREFIX"},
		{"no ledger", map[string]string{"LEDGER_TABLE": ""}, "LEDGER_TABLE is not set"},
		{"no NIP", map[string]string{"KSEF_NIP": ""}, "KSEF_NIP is not set"},
		{"not a number", map[string]string{"BATCH_MAX_INVOICES": "many"}, "BATCH_MAX_INVOICES \"many\" is not a number from 1 to 100000"},
		{"over KSeF's session limit", map[string]string{"BATCH_SESSION_INVOICES": "10001"}, "BATCH_SESSION_INVOICES"},
		{"smaller than one invoice", map[string]string{"BATCH_MAX_BYTES": "1000"}, "BATCH_MAX_BYTES"},
		{"common configuration", map[string]string{"INVOICE_BUCKET": ""}, "INVOICE_BUCKET is not set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadConfig(%v) = %v, want an error saying %q", tt.env, err, tt.want)
			}
		})
	}
}
