package specvalidate_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// knownBadExamples are the examples of the official description that contradict its own
// schemas, with what is wrong with them. Every other request and response example must pass:
// the validator must agree with the description's own idea of valid traffic, KSeF-specific
// formats included.
var knownBadExamples = map[string]string{
	"request POST /auth/ksef-token":                                                  `"/encryptedToken": string doesn't match the format "byte"`,          // "..." placeholder
	"request POST /sessions/online/{referenceNumber}/invoices":                       `"/encryptedInvoiceContent": string doesn't match the format "byte"`, // "..." placeholder
	"request POST /permissions/query/eu-entities/grants":                             `"/vatUeIdentifier": string doesn't match the regular expression`,    // DE with 12 digits
	"response 200 GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}": `property "invoiceHash" is missing`,
	"response 200 GET /security/public-key-certificates":                             `"/0/certificate": string doesn't match the format "byte"`, // shortened certificate
	"response 200 GET /peppol/query":                                                 `"/peppolProviders/0/id": maximum string length is 9`,
}

func TestOfficialExamples(t *testing.T) {
	v := newValidator(t)
	type media map[string]struct {
		Example json.RawMessage `json:"example"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody *struct {
				Content media `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content media `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(official.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	// Path parameters get values that satisfy their schemas.
	params := strings.NewReplacer(
		"{referenceNumber}", sessionRef,
		"{invoiceReferenceNumber}", "20250625-EE-319D7EE000-B67F415CDC-2C",
		"{upoReferenceNumber}", "20250625-EU-319D7EE000-B67F415CDC-2C",
		"{ksefNumber}", "5265877635-20250826-0100001AF629-AF",
	)
	// example decodes an example into the bytes a client or server would send.
	example := func(contentType string, raw json.RawMessage) []byte {
		if contentType != "application/xml" {
			return raw
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("XML example %s: %v", raw, err)
		}
		return []byte(s)
	}
	checked := 0
	failed := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			method = strings.ToUpper(method)
			target := "/v2" + params.Replace(path)
			if op.RequestBody != nil {
				for ct, m := range op.RequestBody.Content {
					if m.Example == nil {
						continue
					}
					body := example(ct, m.Example)
					req := newRequest(method, target, body, "Content-Type", ct, "Authorization", bearer)
					checked++
					if err := v.ValidateRequest(req, body); err != nil {
						failed["request "+method+" "+path] = err.Error()
					}
				}
			}
			for code, resp := range op.Responses {
				status, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("%s %s: status %q", method, path, code)
				}
				for ct, m := range resp.Content {
					if m.Example == nil {
						continue
					}
					req := newRequest(method, target, nil, "Authorization", bearer)
					checked++
					if err := v.ValidateResponse(req, status, http.Header{"Content-Type": {ct}}, example(ct, m.Example)); err != nil {
						failed["response "+code+" "+method+" "+path] = err.Error()
					}
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked %d examples, want at least 50", checked)
	}
	keys := make([]string, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want, known := knownBadExamples[k]
		switch {
		case !known:
			t.Errorf("example for %s fails: %s", k, failed[k])
		case !strings.Contains(failed[k], want):
			t.Errorf("example for %s fails with %q, want it to fail with %q", k, failed[k], want)
		}
	}
	for k := range knownBadExamples {
		if _, ok := failed[k]; !ok {
			t.Errorf("example for %s is listed as bad but passes", k)
		}
	}
}
