package motoserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartResetAWSConfig(t *testing.T) {
	srv := Start(t)
	if again := Start(t); again != srv {
		t.Fatalf("second Start returned another server: %s, want %s", again.Endpoint, srv.Endpoint)
	}
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q, want a loopback URL", srv.Endpoint)
	}
	cfg := AWSConfig(t, srv.Endpoint)
	if cfg.Region != Region {
		t.Fatalf("Region = %q, want %q", cfg.Region, Region)
	}
	sm := secretsmanager.NewFromConfig(cfg)
	ctx := t.Context()

	srv.Reset(t)
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("motoserver-test"), SecretString: aws.String("v1"),
	}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("motoserver-test")})
	if err != nil {
		t.Fatalf("GetSecretValue: %v", err)
	}
	if got := aws.ToString(out.SecretString); got != "v1" {
		t.Fatalf("SecretString = %q, want %q", got, "v1")
	}

	srv.Reset(t)
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("motoserver-test")})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("GetSecretValue after Reset: err = %v, want ResourceNotFoundException", err)
	}
}

func TestStartWithoutCommand(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := start(); !errors.Is(err, errNotInstalled) {
		t.Fatalf("start() with an empty PATH: err = %v, want errNotInstalled", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnop", "q"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	if got, want := b.String(), "jklmnopq"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
