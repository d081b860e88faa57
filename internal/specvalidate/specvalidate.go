package specvalidate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// basePath is the path prefix under which KSeF serves API 2.0, and the one server New routes by.
const basePath = "/v2"

var (
	// ErrUnknownOperation matches (with errors.Is) an *Error for a request whose method and path
	// name no operation of the API.
	ErrUnknownOperation = errors.New("specvalidate: no operation matches the request")
	// ErrUnauthenticated matches (with errors.Is) an *Error for a request without the bearer
	// token its operation requires.
	ErrUnauthenticated = errors.New("specvalidate: missing or malformed bearer token")
)

// errBearer is what the authentication check reports; it never quotes the header.
var errBearer = errors.New(`missing or malformed bearer token: want "Authorization: Bearer <token>"`)

// kind classifies an *Error.
type kind int

const (
	kindRequest kind = iota
	kindRoute
	kindSecurity
	kindResponse
)

// Error reports a request or response that does not conform to the KSeF API description.
type Error struct {
	// Operation names the operation as method and path template, e.g.
	// "POST /sessions/online/{referenceNumber}/invoices", or the request's method and path when
	// no operation matches.
	Operation string
	// Status is the response status; 0 for a request.
	Status int
	// Reason says briefly what is wrong, e.g. `request body has an error: doesn't match schema:
	// Error at "/invoiceHash": minimum string length is 44`.
	Reason string

	kind kind
	err  error // kin-openapi's error
}

var _ error = (*Error)(nil)

// Error returns "specvalidate: request <operation>: <reason>" or
// "specvalidate: response <status> to <operation>: <reason>".
func (e *Error) Error() string {
	if e.kind == kindResponse {
		return fmt.Sprintf("specvalidate: response %d to %s: %s", e.Status, e.Operation, e.Reason)
	}
	return fmt.Sprintf("specvalidate: request %s: %s", e.Operation, e.Reason)
}

// Unwrap returns kin-openapi's error.
func (e *Error) Unwrap() error { return e.err }

// Is reports whether e is of the kind that target, ErrUnknownOperation or ErrUnauthenticated,
// stands for.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnknownOperation:
		return e.kind == kindRoute
	case ErrUnauthenticated:
		return e.kind == kindSecurity
	}
	return false
}

// Validator checks requests and responses against the official KSeF API description. It is safe
// for concurrent use.
type Validator struct {
	router routers.Router
	opts   openapi3filter.Options
}

// registerXMLOnce registers the application/xml body decoder, which kin-openapi keeps in a
// process-wide table.
var registerXMLOnce sync.Once

// New loads the embedded API description, validates it, and prepares routing by path under /v2 on
// any host.
func New() (*Validator, error) {
	loader := openapi3.NewLoader() // external references stay disallowed: nothing is fetched
	doc, err := loader.LoadFromData(official.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("specvalidate: load KSeF API description: %w", err)
	}
	// The description's own examples use KSeF's date-times without offset and "..." for Base64
	// placeholders, which kin-openapi's global formats reject; the formats used for validation
	// are set below instead.
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("specvalidate: KSeF API description is invalid: %w", err)
	}
	doc.Servers = openapi3.Servers{{URL: basePath}}
	for _, item := range doc.Paths.Map() {
		item.Servers = nil
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("specvalidate: build router: %w", err)
	}
	registerXMLOnce.Do(func() {
		if openapi3filter.RegisteredBodyDecoder("application/xml") == nil {
			openapi3filter.RegisterBodyDecoder("application/xml", xmlBodyDecoder)
		}
	})
	v := &Validator{
		router: router,
		opts: openapi3filter.Options{
			IncludeResponseStatus: true,
			SkipSettingDefaults:   true, // bodies and queries are passed on unchanged
			AuthenticationFunc:    checkBearer,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				openapi3.DisableSchemaErrorDetails(),
				openapi3.WithStringFormatValidator("date-time", openapi3.NewCallbackValidator(checkDateTime)),
				openapi3.WithStringFormatValidator("byte", openapi3.NewCallbackValidator(checkBase64)),
			},
		},
	}
	v.opts.WithCustomSchemaErrorFunc(schemaMessage)
	return v, nil
}

// ValidateRequest checks r, whose body is given separately as body (r.Body is not read), against
// the operation its method and path select. It returns nil or an *Error, which matches
// ErrUnknownOperation if no operation has r's method and path, and ErrUnauthenticated if the
// operation requires a bearer token that r lacks.
func (v *Validator) ValidateRequest(r *http.Request, body []byte) error {
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		return routeError(r, err)
	}
	return v.validateRequest(r, route, params, body)
}

// ValidateResponse checks a response with status, header and body, given to request r, against
// the operation r's method and path select. It returns nil or an *Error, which matches
// ErrUnknownOperation if no operation has r's method and path.
func (v *Validator) ValidateResponse(r *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		return routeError(r, err)
	}
	return v.validateResponse(r, route, params, status, header, body)
}

func (v *Validator) validateRequest(r *http.Request, route *routers.Route, params map[string]string, body []byte) error {
	// Validate a shallow copy: kin-openapi replaces the body of the request it is given.
	req := *r
	u := *r.URL
	req.URL = &u
	req.GetBody = nil
	req.ContentLength = int64(len(body))
	req.Body = http.NoBody
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    &req,
		PathParams: params,
		Route:      route,
		Options:    &v.opts,
	}
	err := openapi3filter.ValidateRequest(r.Context(), in)
	if err == nil {
		return nil
	}
	e := &Error{Operation: operationName(route), Reason: err.Error(), kind: kindRequest, err: err}
	var sec *openapi3filter.SecurityRequirementsError
	if errors.As(err, &sec) {
		e.kind = kindSecurity
		e.Reason = errBearer.Error()
	}
	return e
}

func (v *Validator) validateResponse(r *http.Request, route *routers.Route, params map[string]string, status int, header http.Header, body []byte) error {
	fail := func(reason string, err error) error {
		return &Error{Operation: operationName(route), Status: status, Reason: reason, kind: kindResponse, err: err}
	}
	if status >= 500 && route.Operation.Responses.Status(status) == nil {
		return nil // server errors are not part of the description
	}
	if (status == http.StatusNoContent || status == http.StatusNotModified) && len(body) > 0 {
		return fail(fmt.Sprintf("a %d response has a body of %d bytes", status, len(body)), nil)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: params,
			Route:      route,
			Options:    &v.opts,
		},
		Status:  status,
		Header:  header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &v.opts,
	}
	if err := openapi3filter.ValidateResponse(r.Context(), in); err != nil {
		return fail(err.Error(), err)
	}
	return nil
}

// routeError turns a router failure into an *Error.
func routeError(r *http.Request, err error) error {
	reason := "no operation has this path"
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		reason = "the path has no operation for this method"
	}
	return &Error{Operation: r.Method + " " + r.URL.Path, Reason: reason, kind: kindRoute, err: err}
}

// operationName names an operation by its operationId or else by method and path template.
func operationName(route *routers.Route) string {
	if id := route.Operation.OperationID; id != "" {
		return id
	}
	return route.Method + " " + route.Path
}

// schemaMessage shortens kin-openapi's message for a value failing an allOf, which the
// description uses to attach descriptions to references ("allOf": [{"$ref": ...}]): instead of
// `doesn't match schema due to: Error at "/invoiceHash": doesn't match schema due to: minimum
// string length is 44` it gives `Error at "/invoiceHash": minimum string length is 44`. Other
// errors keep the default message.
func schemaMessage(err *openapi3.SchemaError) string {
	if err.SchemaField != "allOf" {
		return ""
	}
	var msgs []string
	for _, leaf := range allOfLeaves(err) {
		reason := leaf.Reason
		if reason == "" && leaf.Origin != nil {
			reason = leaf.Origin.Error()
		}
		if reason == "" {
			reason = fmt.Sprintf("doesn't match schema %q", leaf.SchemaField)
		}
		if p := leaf.JSONPointer(); len(p) > 0 {
			reason = fmt.Sprintf("Error at %q: %s", "/"+strings.Join(p, "/"), reason)
		}
		msgs = append(msgs, reason)
	}
	return strings.Join(msgs, " | ")
}

// allOfLeaves returns the innermost errors below an allOf failure.
func allOfLeaves(err *openapi3.SchemaError) []*openapi3.SchemaError {
	if err.SchemaField != "allOf" {
		return []*openapi3.SchemaError{err}
	}
	var leaves []*openapi3.SchemaError
	for e := err.Origin; e != nil; e = errors.Unwrap(e) {
		if me, ok := e.(openapi3.MultiError); ok {
			for _, m := range me {
				var se *openapi3.SchemaError
				if errors.As(m, &se) {
					leaves = append(leaves, allOfLeaves(se)...)
				}
			}
			break
		}
	}
	if len(leaves) == 0 {
		return []*openapi3.SchemaError{err}
	}
	return leaves
}

// checkBearer is the AuthenticationFunc: it asserts the shape of the Authorization header, not
// the validity of the token.
func checkBearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	ss := in.SecurityScheme
	if ss == nil || ss.Type != "http" || !strings.EqualFold(ss.Scheme, "bearer") {
		return fmt.Errorf("security scheme %q is not supported", in.SecuritySchemeName)
	}
	values := in.RequestValidationInput.Request.Header.Values("Authorization")
	if len(values) != 1 {
		return errBearer
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errBearer
	}
	return nil
}

// xmlBodyDecoder passes application/xml bodies on as strings: the description's schema for them
// is "type: string", and XML well-formedness is the business of the operation (KSeF answers
// malformed XAdES requests with its own codes, not 21405).
func xmlBodyDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("read XML body: %w", err)
	}
	return string(b), nil
}
