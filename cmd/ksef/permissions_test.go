package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
)

// permissionRows decodes the JSON Lines of ksef permissions list.
func permissionRows(t *testing.T, stdout string) []permissionRow {
	t.Helper()
	var rows []permissionRow
	for line := range strings.Lines(stdout) {
		var r permissionRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

func TestPermissions(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	peselCert, peselKey := h.selfSigned("pesel", "--pesel", testPESEL)
	owner := []string{"--cert", sealCert, "--key", sealKey}
	person := []string{"--cert", peselCert, "--key", peselKey}

	// Before the grant the person cannot log in to the context.
	code, _, stderr := h.ksef(t.Context(), append([]string{"login"}, h.api(person...)...)...)
	if code != exitFailure || !strings.Contains(stderr, " failed: 415 ") {
		t.Fatalf("login before the grant: exit %d, want 3 with status 415", code)
	}

	code, stdout, stderr := h.ksef(t.Context(), append([]string{"permissions", "grant", "--pesel", testPESEL, "--first-name", "Jan", "--last-name", "Testowy",
		"--permission", "InvoiceWrite", "--permission", "InvoiceRead,CredentialsRead"}, h.api(owner...)...)...)
	if code != exitOK {
		t.Fatalf("grant: exit %d", code)
	}
	want(t, "stdout", stdout, "Granted InvoiceWrite,InvoiceRead,CredentialsRead to person PESEL "+testPESEL+" (Jan Testowy) in context NIP "+testNIP+" (operation ")
	want(t, "stderr", stderr, "KSeF accepted the grant (operation ", "waiting for permission operation ")

	if code, _, _ := h.ksef(t.Context(), append([]string{"login"}, h.api(person...)...)...); code != exitOK {
		t.Errorf("login after the grant: exit %d", code)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"permissions", "grant", "--entity", "5265877635", "--entity-name", "Biuro Rachunkowe Sp. z o.o.",
		"--permission", "InvoiceRead", "--can-delegate", "--description", "accounting office"}, h.api(owner...)...)...)
	if code != exitOK || !strings.Contains(stdout, "Granted InvoiceRead to entity NIP 5265877635 (Biuro Rachunkowe Sp. z o.o.)") {
		t.Errorf("grant to an entity: exit %d, stdout %q", code, stdout)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"permissions", "list", "--json"}, h.api(owner...)...)...)
	if code != exitOK {
		t.Fatalf("list: exit %d", code)
	}
	var writeID string
	found := map[string]bool{}
	for _, r := range permissionRows(t, stdout) {
		found[r.Holder+" "+r.Permission] = true
		if r.Holder == "Pesel "+testPESEL+" (Jan Testowy)" && r.Permission == "InvoiceWrite" {
			writeID = r.ID
		}
	}
	for _, w := range []string{"Pesel " + testPESEL + " (Jan Testowy) InvoiceWrite", "Pesel " + testPESEL + " (Jan Testowy) CredentialsRead", "Nip 5265877635 (Biuro Rachunkowe Sp. z o.o.) InvoiceRead"} {
		if !found[w] {
			t.Errorf("list lacks %q; has %v", w, found)
		}
	}
	if writeID == "" {
		t.Fatal("no ID for the person's InvoiceWrite")
	}

	// The person sees its own permissions.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"permissions", "list", "--mine"}, h.api(person...)...)...)
	if code != exitOK || !strings.Contains(stdout, "InvoiceWrite") || !strings.Contains(stdout, "CredentialsRead") {
		t.Errorf("list --mine: exit %d:\n%s", code, stdout)
	}
	// Without CredentialsManage it cannot grant.
	code, _, stderr = h.ksef(t.Context(), append([]string{"permissions", "grant", "--person-nip", "5265877635", "--first-name", "Anna", "--last-name", "Nowak",
		"--permission", "InvoiceRead"}, h.api(person...)...)...)
	if code != exitFailure || !strings.Contains(stderr, "ksef permissions grant: grant InvoiceRead to person NIP 5265877635 (Anna Nowak): ") {
		t.Errorf("grant without CredentialsManage: exit %d, stderr %q", code, stderr)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"permissions", "revoke", writeID}, h.api(owner...)...)...)
	if code != exitOK || !strings.Contains(stdout, "Revoked permission "+writeID) {
		t.Errorf("revoke: exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = h.ksef(t.Context(), append([]string{"permissions", "list"}, h.api(owner...)...)...)
	if code != exitOK || strings.Contains(stdout, writeID) || !strings.Contains(stdout, "CredentialsRead") {
		t.Errorf("list after revoking %s: exit %d:\n%s", writeID, code, stdout)
	}
}

func TestPermissionsUsage(t *testing.T) {
	grant := []string{"permissions", "grant", "--nip", testNIP}
	tests := []struct {
		args    []string
		wantErr string
	}{
		{append(grant, "--permission", "InvoiceRead"), "give one of --pesel, --person-nip and --entity"},
		{append(grant, "--pesel", testPESEL, "--entity", "5265877635", "--permission", "InvoiceRead"), "give one of --pesel, --person-nip and --entity"},
		{append(grant, "--pesel", testPESEL, "--first-name", "A", "--last-name", "B"), "--permission is required"},
		{append(grant, "--pesel", testPESEL, "--permission", "InvoiceRead"), "a person needs --first-name and --last-name"},
		{append(grant, "--entity", "5265877635", "--permission", "InvoiceRead"), "an entity needs --entity-name"},
		{append(grant, "--entity", "5265877635", "--entity-name", "Biuro", "--permission", "CredentialsManage"), "an entity can get InvoiceWrite, InvoiceRead only, not CredentialsManage"},
		{append(grant, "--pesel", testPESEL, "--first-name", "A", "--last-name", "B", "--permission", "Owner"), `invalid value "Owner" for flag -permission: unknown permission "Owner"`},
		{append(grant, "--pesel", testPESEL, "--first-name", "A", "--last-name", "B", "--permission", "InvoiceRead", "--can-delegate"), "--entity-name and --can-delegate go with --entity"},
		{[]string{"permissions", "revoke", "--nip", testNIP}, "give the ID of one permission"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		if code := run(t.Context(), tt.args, &stdout, &stderr, noEnv(t)); code != exitUsage || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("run(%q) = %d, stderr:\n%s\nwant 2 and %q", tt.args, code, stderr.String(), tt.wantErr)
		}
	}
}
