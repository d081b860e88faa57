package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// writeFailingSecrets is a Secrets Manager whose secret does not exist yet and cannot be
// created, or, with err nil, is created.
type writeFailingSecrets struct {
	secretsAPI // nil: any other call panics
	err        error
}

func (f *writeFailingSecrets) CreateSecret(context.Context, *secretsmanager.CreateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &secretsmanager.CreateSecretOutput{}, nil
}

// TestSaveNew: a new credential that cannot be stored is revoked again (on a context that
// Ctrl-C has not cancelled), unless the caller has a copy; a stored one is not.
func TestSaveNew(t *testing.T) {
	errWrite := errors.New("access denied")
	errRevoke := errors.New("revoke refused")
	tests := []struct {
		name        string
		writeErr    error
		revoke      bool  // pass a revoke function
		revokeErr   error // what it returns
		wantRevoked bool
		wantErr     string // "" for none
	}{
		{name: "stored", revoke: true},
		{name: "not stored, revoked", writeErr: errWrite, revoke: true, wantRevoked: true,
			wantErr: "create secret ksef/5265877635: access denied (token 20251010-EC-1 revoked again)"},
		{name: "not stored, revocation fails", writeErr: errWrite, revoke: true, revokeErr: errRevoke, wantRevoked: true,
			wantErr: "create secret ksef/5265877635: access denied; revoking the unstored token 20251010-EC-1 failed too: revoke refused"},
		{name: "not stored, a copy exists", writeErr: errWrite,
			wantErr: "create secret ksef/5265877635: access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := &cli{stdout: io.Discard, stderr: io.Discard, env: procEnv{now: func() time.Time { return time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC) }}}
			s := &credStore{x: x, api: &writeFailingSecrets{err: tt.writeErr}, name: "ksef/5265877635", nip: "5265877635"}
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // Ctrl-C came before the credential was stored
			revoked := false
			var revoke func(context.Context) error
			if tt.revoke {
				revoke = func(ctx context.Context) error {
					if ctx.Err() != nil {
						t.Errorf("revoke called with a done context: %v", ctx.Err())
					}
					revoked = true
					return tt.revokeErr
				}
			}
			u := credentialUpdate{env: ksef.Test, apply: func(c *secrets.Credentials) {
				c.AuthMethod = secrets.AuthToken
				c.KSeFToken = "20251010-EC-1|nip-5265877635|0123456789abcdef"
			}}
			err := s.saveNew(ctx, u, "token 20251010-EC-1", revoke)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("saveNew: %v, want no error", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("saveNew: error %v, want %q", err, tt.wantErr)
			case tt.wantErr != "" && !errors.Is(err, errWrite):
				t.Errorf("saveNew error %v does not wrap the write's", err)
			}
			if tt.revokeErr != nil && !errors.Is(err, tt.revokeErr) {
				t.Errorf("saveNew error %v does not wrap the revocation's", err)
			}
			if revoked != tt.wantRevoked {
				t.Errorf("revoked %t, want %t", revoked, tt.wantRevoked)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("saveNew error %q shows the token", err)
			}
		})
	}
}
