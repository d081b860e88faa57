// Package ledgertest checks event details against docs/events.schema.json, the documented
// contract of the EventBridge events the pipeline publishes (the JSON of a ledger.Event is an
// event's detail), so that every test that sees such events checks them against the one schema
// file, with formats (date-time) asserted:
//
//	ledgertest.CheckEvents(t, published) // published is a []ledger.Event
//
//	if err := ledgertest.ValidateDetail(t, entry.Detail); err != nil { // raw detail JSON
//		t.Errorf("detail does not match docs/events.schema.json: %v\n%s", err, entry.Detail)
//	}
//
// The schema is found from the test's working directory (its package directory, under go
// test): docs/events.schema.json beside the nearest go.mod above it. This package does not
// import package ledger, so that package's own tests can use it.
package ledgertest
