package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specPath is the API's description, relative to this package.
const specPath = "../../api/openapi.yaml"

type spec struct {
	doc    *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options
}

// loadSpec loads and validates api/openapi.yaml once per test binary.
var loadSpec = sync.OnceValues(func() (*spec, error) {
	loader := openapi3.NewLoader() // external references stay disallowed
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI 3.0 document: %w", specPath, err)
	}
	// Route by path on any host: the events come from the example API's domain.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", specPath, err)
	}
	for _, mt := range []string{"application/xml", "text/xml"} {
		if openapi3filter.RegisteredBodyDecoder(mt) == nil {
			openapi3filter.RegisterBodyDecoder(mt, func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
				b, err := io.ReadAll(r)
				return string(b), err
			})
		}
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the description does not list is an error
		AuthenticationFunc:    checkAuthorization,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.EnableFormatValidation(),
		},
	}
	return &spec{doc: doc, router: router, opts: opts}, nil
})

// checkAuthorization asserts that a request carries what its security scheme needs, in shape:
// API Gateway has checked it before the function runs.
func checkAuthorization(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	auth := in.RequestValidationInput.Request.Header.Get("Authorization")
	switch in.SecuritySchemeName {
	case "sigv4":
		if strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=") {
			return nil
		}
	case "jwt":
		if strings.HasPrefix(auth, "Bearer ") && strings.Count(auth, ".") == 2 {
			return nil
		}
	}
	return errors.New("no " + in.SecuritySchemeName + " authorization")
}

// httpRequest rebuilds the HTTP request API Gateway turned into ev.
func httpRequest(t *testing.T, ev *events.APIGatewayV2HTTPRequest) (*http.Request, []byte) {
	t.Helper()
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			t.Fatalf("event body: %v", err)
		}
		body = b
	}
	method, _, _ := strings.Cut(ev.RouteKey, " ")
	host := ev.RequestContext.DomainName
	if host == "" {
		host = "localhost"
	}
	r, err := http.NewRequestWithContext(t.Context(), method, "https://"+host+ev.RawPath, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("rebuild request: %v", err)
	}
	for k, v := range ev.Headers {
		r.Header.Set(k, v)
	}
	return r, body
}

// checkResponse fails the test if resp, the answer to ev, is not what api/openapi.yaml
// describes for the operation: a status it lists, headers and a body matching their schemas.
func checkResponse(t *testing.T, ev *events.APIGatewayV2HTTPRequest, resp *events.APIGatewayV2HTTPResponse) {
	t.Helper()
	s, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := httpRequest(t, ev)
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		t.Fatalf("%s %s: no operation in %s: %v", r.Method, r.URL.Path, specPath, err)
	}
	header := http.Header{}
	for k, v := range resp.Headers {
		header.Set(k, v)
	}
	err = openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: s.opts},
		Status:                 resp.StatusCode,
		Header:                 header,
		Body:                   io.NopCloser(strings.NewReader(resp.Body)),
		Options:                s.opts,
	})
	if err != nil {
		t.Errorf("response %d to %s %s does not match %s: %v\nbody: %s", resp.StatusCode, r.Method, r.URL.Path, specPath, err, resp.Body)
	}
}

func TestSpecDescribesRequests(t *testing.T) {
	s, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"post_invoice.json", "post_invoice_jwt.json", "get_invoice.json"} {
		t.Run(name, func(t *testing.T) {
			ev := loadEvent(t, name)
			r, body := httpRequest(t, &ev)
			route, params, err := s.router.FindRoute(r)
			if err != nil {
				t.Fatalf("%s %s: no operation: %v", r.Method, r.URL.Path, err)
			}
			if got, want := route.Method+" "+route.Path, ev.RouteKey; got != want {
				t.Errorf("operation = %q, want the event's routeKey %q", got, want)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if err := openapi3filter.ValidateRequest(t.Context(), &openapi3filter.RequestValidationInput{
				Request: r, PathParams: params, Route: route, Options: s.opts,
			}); err != nil {
				t.Errorf("request does not match %s: %v", specPath, err)
			}
		})
	}
}
