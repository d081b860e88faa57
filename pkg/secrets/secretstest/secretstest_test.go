package secretstest_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const name = "ksef/5265877635/session"

func put(t *testing.T, sm *secretstest.SecretsManager, token, value string) error {
	t.Helper()
	in := &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)}
	if token != "" {
		in.ClientRequestToken = aws.String(token)
	}
	out, err := sm.PutSecretValue(t.Context(), in)
	if err == nil && aws.ToString(out.VersionId) != token {
		t.Errorf("PutSecretValue(%s, %q): VersionId %q, want the token", token, value, aws.ToString(out.VersionId))
	}
	return err
}

// current returns the current value and version of the secret, or the GetSecretValue error.
func current(t *testing.T, sm *secretstest.SecretsManager) (value, version string, err error) {
	t.Helper()
	out, err := sm.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		return "", "", err
	}
	if !reflect.DeepEqual(out.VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("VersionStages = %v, want [AWSCURRENT]", out.VersionStages)
	}
	return aws.ToString(out.SecretString), aws.ToString(out.VersionId), nil
}

func TestVersionRules(t *testing.T) {
	sm := secretstest.New()
	ctx := t.Context()
	var notFound *types.ResourceNotFoundException
	if _, _, err := current(t, sm); !errors.As(err, &notFound) {
		t.Fatalf("GetSecretValue of a missing secret: err = %v, want ResourceNotFoundException", err)
	}
	if err := put(t, sm, "v1", "a"); !errors.As(err, &notFound) {
		t.Fatalf("PutSecretValue to a missing secret: err = %v, want ResourceNotFoundException", err)
	}
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("a"), ClientRequestToken: aws.String("v1")}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	var exists *types.ResourceExistsException
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("b"), ClientRequestToken: aws.String("v9")}); !errors.As(err, &exists) {
		t.Fatalf("CreateSecret of an existing secret: err = %v, want ResourceExistsException", err)
	}

	var invalid *types.InvalidParameterException
	tests := []struct {
		token, value string
		wantErr      any // nil, or a pointer to the error type
		wantValue    string
		wantVersion  string
	}{
		{"v2", "b", nil, "b", "v2"},
		{"v2", "b", nil, "b", "v2"},     // same token, same value: no effect
		{"v1", "a", nil, "b", "v2"},     // an older version again: AWSCURRENT stays
		{"v2", "c", &exists, "b", "v2"}, // same token, other value
		{"", "c", &invalid, "b", "v2"},  // no token
		{"v3", "c", nil, "c", "v3"},
	}
	for i, tt := range tests {
		err := put(t, sm, tt.token, tt.value)
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.As(err, tt.wantErr) {
			t.Errorf("put %d (%q, %q): err = %v, want %T", i, tt.token, tt.value, err, tt.wantErr)
		}
		if v, id, err := current(t, sm); err != nil || v != tt.wantValue || id != tt.wantVersion {
			t.Errorf("after put %d (%q, %q): current = %q at %q, %v; want %q at %q", i, tt.token, tt.value, v, id, err, tt.wantValue, tt.wantVersion)
		}
	}
	want := secretstest.Counts{Gets: 7, Puts: 7, Creates: 2, PutsApplied: 2, Conflicts: 1}
	if got := sm.Counts(); got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
}

func TestCreateWithoutValue(t *testing.T) {
	sm := secretstest.New()
	out, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name)})
	if err != nil || out.VersionId != nil {
		t.Fatalf("CreateSecret without a value = %+v, %v; want no version", out, err)
	}
	var notFound *types.ResourceNotFoundException
	if _, _, err := current(t, sm); !errors.As(err, &notFound) {
		t.Fatalf("GetSecretValue of a secret without a value: err = %v, want ResourceNotFoundException", err)
	}
	var st struct{ N int }
	sm.DecodeJSON(t, name, &st)
	if st.N != 0 {
		t.Errorf("DecodeJSON of a secret without a value changed v to %+v", st)
	}
	if err := put(t, sm, "v1", `{"N":1}`); err != nil {
		t.Fatalf("first PutSecretValue: %v", err)
	}
	sm.DecodeJSON(t, name, &st)
	if st.N != 1 || sm.Value(t, name) != `{"N":1}` {
		t.Errorf("after the first put: DecodeJSON %+v, Value %q; want N 1", st, sm.Value(t, name))
	}
	if got := sm.Names(); !reflect.DeepEqual(got, []string{name}) {
		t.Errorf("Names() = %v, want [%s]", got, name)
	}
}

func TestSet(t *testing.T) {
	sm := secretstest.New()
	sm.SetJSON(t, name, map[string]int{"n": 1})
	v, id1, err := current(t, sm)
	if err != nil || v != `{"n":1}` {
		t.Fatalf("after SetJSON: %q, %v; want {\"n\":1}", v, err)
	}
	sm.Set(name, "x")
	if v, id2, err := current(t, sm); err != nil || v != "x" || id2 == id1 {
		t.Errorf("after Set: %q at %q (before: %q), %v; want x at a new version", v, id2, id1, err)
	}
	sm.Set("other", "y")
	sm.SetBinary(name, []byte{1, 2})
	out, err := sm.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil || out.SecretString != nil || !reflect.DeepEqual(out.SecretBinary, []byte{1, 2}) {
		t.Errorf("after SetBinary: %+v, %v; want SecretBinary [1 2] only", out, err)
	}
	if got := sm.Names(); !reflect.DeepEqual(got, []string{name, "other"}) {
		t.Errorf("Names() = %v, want [%s other]", got, name)
	}
	if got := sm.Counts(); got != (secretstest.Counts{Gets: 3}) {
		t.Errorf("Counts() = %+v, want only the 3 reads: Set, SetJSON and SetBinary are no calls", got)
	}
}

func TestBinaryVersions(t *testing.T) {
	sm := secretstest.New()
	ctx := t.Context()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretBinary: []byte{1}, ClientRequestToken: aws.String("v1")}
	if _, err := sm.CreateSecret(ctx, in); err != nil {
		t.Fatalf("CreateSecret with SecretBinary: %v", err)
	}
	in.SecretBinary[0] = 9 // the fake keeps its own copy
	var exists *types.ResourceExistsException
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String("\x01"), ClientRequestToken: aws.String("v1")}); !errors.As(err, &exists) {
		t.Errorf("a string under a binary version's token: err = %v, want ResourceExistsException", err)
	}
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretBinary: []byte{1}, ClientRequestToken: aws.String("v1")}); err != nil {
		t.Errorf("the same binary again: %v", err)
	}
	var invalid *types.InvalidParameterException
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), ClientRequestToken: aws.String("v2")}); !errors.As(err, &invalid) {
		t.Errorf("PutSecretValue without a value: err = %v, want InvalidParameterException", err)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil || !reflect.DeepEqual(out.SecretBinary, []byte{1}) || aws.ToString(out.VersionId) != "v1" {
		t.Errorf("GetSecretValue = %+v, %v; want [1] at v1", out, err)
	}
}

func TestHooks(t *testing.T) {
	sm := secretstest.New()
	ctx := t.Context()
	denied := errors.New("access denied")
	var seen []string
	sm.BeforeGet = func(n string) error { seen = append(seen, "get "+n); return denied }
	sm.BeforePut = func(n string) error {
		seen = append(seen, "put "+n)
		sm.BeforePut = nil
		sm.Set(n, "competitor") // hooks run outside the lock
		return nil
	}
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("mine"), ClientRequestToken: aws.String("v1")}); err == nil {
		t.Error("CreateSecret after a competitor's write succeeded, want ResourceExistsException")
	}
	if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)}); !errors.Is(err, denied) {
		t.Errorf("GetSecretValue: err = %v, want the injected error", err)
	}
	if want := []string{"put " + name, "get " + name}; !reflect.DeepEqual(seen, want) {
		t.Errorf("hooks ran for %v, want %v", seen, want)
	}
	if v := sm.Value(t, name); v != "competitor" {
		t.Errorf("Value = %q, want the competitor's", v)
	}
	if got := sm.Counts(); got != (secretstest.Counts{Gets: 1, Creates: 1}) {
		t.Errorf("Counts() = %+v, want the failed calls counted", got)
	}
}
