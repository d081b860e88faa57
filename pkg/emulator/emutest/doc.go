// Package emutest runs a KSeF 2.0 emulator (package emulator) for one Go test, behind an
// httptest server, with a fake clock and the official OpenAPI description enforced on every
// request and response.
//
//	func TestSend(t *testing.T) {
//		srv := emutest.NewServer(t, emulator.Config{Tokens: map[string][]string{"5265877635": {"tok"}}})
//		c := newClient(srv.URL)                      // base URL ending in /v2
//		// ... log in, open a session, send an invoice ...
//		srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
//		// ... the invoice status is now final ...
//	}
//
// A request or response that violates the description fails the test with the validator's
// reason. Negative tests that send a deliberately invalid request (no bearer token, a malformed
// field) set the header InvalidRequestHeader on it; the 5xx answers of injected httpError faults,
// which the description does not document, are let through too.
package emutest
