// Package specvalidate checks HTTP requests and responses against the official KSeF API 2.0
// OpenAPI description (internal/official, API version 2.6.0), so that the KSeF emulator and the
// tests notice at once when a client sends, or the emulator answers, something the real KSeF
// would not accept or produce.
//
// Build one Validator per process; it is safe for concurrent use:
//
//	v, err := specvalidate.New()
//	if err != nil {
//		return fmt.Errorf("load KSeF API description: %w", err)
//	}
//	h := v.Middleware(emulatorMux, specvalidate.Options{
//		RejectInvalidRequests: true,
//		OnResponseError: func(r *http.Request, status int, err error) {
//			t.Errorf("emulator answered %s %s with %d off-spec: %v", r.Method, r.URL.Path, status, err)
//		},
//	})
//
// # Routing
//
// The description's only server is https://api-test.ksef.mf.gov.pl/v2. New replaces it with the
// relative server "/v2", so operations are found by path on any host and port: an httptest server
// at http://127.0.0.1:41234 serves POST /v2/auth/challenge as the operation "POST /auth/challenge".
// The description has no operationId values, so errors name operations as method and path
// template, e.g. "POST /sessions/online/{referenceNumber}/invoices".
//
// # What is checked
//
// Requests: path, query and header parameters, the body against its schema and media type, and
// the presence of a bearer token where the operation requires one. The token is checked for shape
// only ("Bearer <non-empty>", scheme case-insensitive), never as a JWT. Responses: the status must
// be documented for the operation (5xx statuses, which the description never lists, are not
// checked), documented headers must match their schemas, and the body must match the schema of
// its media type; 204 responses must be empty. application/xml bodies (XAdES authentication
// requests, invoice and UPO downloads) are accepted as strings, since their schema is
// "type: string"; application/problem+json bodies are decoded as JSON.
//
// Two formats follow KSeF rather than kin-openapi's defaults. "date-time" accepts RFC 3339
// date-times with any number of fractional digits and with or without an offset, as KSeF
// emits them (ExceptionInfo.timestamp has none, e.g. "2025-10-11T12:23:56.0154302"). "byte"
// requires standard Base64 with padding (RFC 4648 §4), which KSeF's deserializer demands; the
// default would also pass Base64URL and missing padding.
//
// Error messages do not dump bodies or the Authorization header (kin-openapi's schema and value
// dumps are turned off): they name the operation, the JSON pointer of the offending value and the
// rule it breaks, so that tokens and invoice contents stay out of logs.
package specvalidate
