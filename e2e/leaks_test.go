package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// jwtShape matches anything shaped like a JWT: a JOSE header, a JSON payload, a signature. It
// catches tokens the state secret no longer holds (an authentication token, an access token
// replaced by a refresh).
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}`)

// minSecretLen keeps short fragments out of the search (they could match by chance).
const minSecretLen = 16

// collectSecrets adds the current secrets of the NIP to the set searched for by checkNoLeaks: the
// KSeF token or the XAdES private key from the credentials secret, and the JWTs and the online
// session's AES key from the state secret. Called after every execution, so that tokens and keys
// replaced later are searched for too.
func (s *stack) collectSecrets(ctx context.Context) error {
	cred, err := s.Secret(ctx, localrun.CredentialsSecretName(s.nip))
	if err != nil {
		return err
	}
	var c struct {
		KSeFToken     string `json:"ksefToken"`
		PrivateKeyPEM string `json:"privateKeyPem"`
	}
	if err := json.Unmarshal(cred, &c); err != nil {
		return fmt.Errorf("decode the credentials secret: %w", err)
	}
	state, err := s.Secret(ctx, localrun.StateSecretName(s.nip))
	if err != nil {
		return err
	}
	var st secrets.State
	if state != nil {
		if err := json.Unmarshal(state, &st); err != nil {
			return fmt.Errorf("decode the state secret: %w", err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(v, what string) {
		if len(v) >= minSecretLen {
			s.secrets[v] = what
		}
	}
	if c.KSeFToken != "" {
		add(c.KSeFToken, "the KSeF token")
		add(c.KSeFToken[strings.LastIndex(c.KSeFToken, "|")+1:], "the secret part of the KSeF token")
	}
	for _, line := range strings.Split(c.PrivateKeyPEM, "\n") {
		if !strings.HasPrefix(line, "-----") {
			add(strings.TrimSpace(line), "the XAdES private key")
		}
	}
	jwt := func(tok, what string) {
		add(tok, what)
		if i := strings.LastIndex(tok, "."); i >= 0 {
			add(tok[i+1:], "the signature of "+what)
		}
	}
	jwt(st.AccessToken.Token.Reveal(), "an access token")
	jwt(st.RefreshToken.Token.Reveal(), "a refresh token")
	if p := st.PendingAuth; p != nil {
		jwt(p.AuthenticationToken.Token.Reveal(), "an authentication token")
	}
	if ss := st.Session; ss != nil && ss.Handle != nil && len(ss.Handle.Key) > 0 {
		key := []byte(ss.Handle.Key)
		add(base64.StdEncoding.EncodeToString(key), "a session AES key (Base64)")
		add(base64.RawURLEncoding.EncodeToString(key), "a session AES key (Base64URL)")
		add(hex.EncodeToString(key), "a session AES key (hex)")
		add(fmt.Sprint(key), "a session AES key (Go byte slice)")
	}
	return nil
}

// checkNoLeaks searches every object version in the bucket, every execution's output and cause,
// and, after stopping the stack, every file of its run directory (the logs of the functions, the
// emulator, moto and Node) for the secrets collected during the run and for anything shaped like
// a JWT.
func (s *stack) checkNoLeaks(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // t.Context is done by now
	defer cancel()
	if err := s.collectSecrets(ctx); err != nil {
		t.Errorf("leak check: %v", err)
	}
	docs, err := s.objects(ctx)
	if err != nil {
		t.Errorf("leak check: %v", err)
	}
	s.mu.Lock()
	for i, e := range s.executions {
		docs[fmt.Sprintf("execution %d output", i+1)] = e.Output
		docs[fmt.Sprintf("execution %d cause", i+1)] = []byte(e.Cause)
	}
	kinds := slices.Sorted(maps.Values(s.secrets))
	s.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Errorf("stop the local stack: %v", err)
	}
	logs := 0
	err = filepath.WalkDir(s.RunDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.RunDir(), p)
		docs[rel] = b
		logs++
		return nil
	})
	if err != nil {
		t.Errorf("leak check: %v", err)
	}

	// The search must have had something to find: the credential always, and an access token
	// once an execution got past authentication.
	if !slices.Contains(kinds, "the KSeF token") && !slices.Contains(kinds, "the XAdES private key") {
		t.Errorf("leak check: no credential collected (kinds %v)", slices.Compact(kinds))
	}
	if len(s.executions) > 0 && !slices.Contains(kinds, "an access token") {
		t.Errorf("leak check: %d executions but no access token collected (kinds %v)", len(s.executions), slices.Compact(kinds))
	}
	if logs < 6 { // moto, emulator, executions, one per function
		t.Errorf("leak check: %d files in %s, want the logs of every process", logs, s.RunDir())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range findLeaks(docs, s.secrets) {
		t.Errorf("secret leaked: %s", l)
	}
}

// findLeaks returns where each secret (value -> what it is) or anything shaped like a JWT
// occurs in the documents (name -> content), naming what and where, never the value.
func findLeaks(docs map[string][]byte, secretSet map[string]string) []string {
	values := slices.Sorted(maps.Keys(secretSet))
	var out []string
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		doc := string(docs[name])
		for _, v := range values {
			if n := strings.Count(doc, v); n > 0 {
				out = append(out, fmt.Sprintf("%s, %d times in %s", secretSet[v], n, name))
			}
		}
		if n := len(jwtShape.FindAllStringIndex(doc, -1)); n > 0 {
			out = append(out, fmt.Sprintf("something shaped like a JWT, %d times in %s", n, name))
		}
	}
	return out
}

// redact replaces the collected secrets and anything shaped like a JWT in text, for failure
// messages that quote logs.
func (s *stack) redact(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.secrets {
		text = strings.ReplaceAll(text, v, "[SECRET]")
	}
	return jwtShape.ReplaceAllString(text, "[JWT]")
}

func TestFindLeaks(t *testing.T) {
	const (
		token = "20261125-EC-0123456789-ABCDEF0123-45|nip-9999999999|0f1e2d3c4b5a69788796a5b4c3d2e1f0"
		jwt   = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI5OTk5OTk5OTk5In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
		key   = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	)
	set := map[string]string{token: "the KSeF token", key: "a session AES key (Base64)"}
	docs := map[string][]byte{
		"logs/function-send-0.log": []byte(`{"msg":"invoice sent","key":"inbox/a.xml"}` + "\n" + `{"msg":"debug","sessionKey":"` + key + `"}`),
		"logs/emulator.log":        []byte(`{"msg":"request","authorization":"Bearer ` + jwt + `"}`),
		"results/a.xml.error.json": []byte(`{"reason":{"message":"bad token ` + token + ` and again ` + token + `"}}`),
		"logs/clean.log":           []byte(`{"msg":"[REDACTED]","note":"eyJ alone is not a token"}`),
	}
	got := findLeaks(docs, set)
	want := []string{
		"something shaped like a JWT, 1 times in logs/emulator.log",
		"a session AES key (Base64), 1 times in logs/function-send-0.log",
		"the KSeF token, 2 times in results/a.xml.error.json",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findLeaks:\n got %q\nwant %q", got, want)
	}
	for _, l := range got {
		for v := range set {
			if strings.Contains(l, v) {
				t.Errorf("finding %q quotes the secret it found", l)
			}
		}
	}
}
