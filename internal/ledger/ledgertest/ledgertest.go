package ledgertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the path of the events' JSON Schema, from the module root.
const schemaPath = "docs/events.schema.json"

// schema is the compiled schema, compiled once per test binary.
var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(filepath.Join(root, schemaPath))
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", schemaPath, err)
	}
	return s, nil
})

// moduleRoot returns the nearest directory holding a go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("find the module root: no go.mod above " + dir)
		}
	}
}

// ValidateDetail returns nil if detail, an event's detail as JSON, matches
// docs/events.schema.json, and the schema's validation error otherwise. A detail that is not
// JSON, or a schema that cannot be read or compiled, fails tb.
func ValidateDetail(tb testing.TB, detail []byte) error {
	tb.Helper()
	s, err := schema()
	if err != nil {
		tb.Fatalf("ledgertest: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(detail))
	if err != nil {
		tb.Fatalf("ledgertest: event detail is not JSON: %v\n%s", err, detail)
	}
	return s.Validate(v)
}

// CheckEvents reports an error on tb for each of events whose JSON does not match
// docs/events.schema.json. The events are ledger.Event values, or any other values whose JSON
// is an event's detail.
func CheckEvents[E any](tb testing.TB, events []E) {
	tb.Helper()
	for i, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			tb.Fatalf("ledgertest: encode event %d: %v", i, err)
		}
		if err := ValidateDetail(tb, b); err != nil {
			tb.Errorf("event %d does not match %s: %v\n%s", i, schemaPath, err, b)
		}
	}
}
