package lambdaenv

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// IsolateAWS keeps the AWS configuration loader off this machine's files and the network for
// the rest of the test: it reads the environment alone (region eu-central-1, the named profile,
// empty configuration files) and builds clients, which call nothing until used. It is exported
// for the package's external tests.
func IsolateAWS(t *testing.T, profile string) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_REGION", "eu-central-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", profile)
}

func TestSetup(t *testing.T) {
	vars := map[string]string{"KSEF_CREDENTIALS_SECRET": "c", "KSEF_STATE_SECRET": "s", "INVOICE_BUCKET": "b"}
	getenv := func(k string) string { return vars[k] }
	errBad := errors.New("invalid configuration: KSEF_NIP is not set")
	tests := []struct {
		name      string
		profile   string
		load      func(getenv func(string) string) (Config, error)
		wantStage string
		wantErr   error // nil: any error
	}{
		{name: "ok", load: LoadConfig},
		{name: "bad configuration", load: func(func(string) string) (Config, error) { return Config{}, errBad }, wantStage: "bad configuration", wantErr: errBad},
		{name: "missing AWS profile", profile: "no-such-profile", load: LoadConfig, wantStage: "cannot start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			IsolateAWS(t, tt.profile) // a profile that no file defines makes New fail
			log := slog.New(slog.DiscardHandler)
			env, stage, err := setup(t.Context(), log, getenv, tt.load)
			if tt.wantStage == "" {
				if err != nil {
					t.Fatalf("setup: stage %q, error %v; want an Env", stage, err)
				}
				want, _ := LoadConfig(getenv)
				if env.Config != want || env.Log != log || env.Config.Environment != ksef.Test {
					t.Errorf("setup: Env config %+v, log %p; want %+v, %p", env.Config, env.Log, want, log)
				}
				return
			}
			if err == nil || stage != tt.wantStage || env != nil {
				t.Fatalf("setup: env %v, stage %q, error %v; want stage %q and an error", env, stage, err, tt.wantStage)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("setup error %v, want %v", err, tt.wantErr)
			}
		})
	}
}
