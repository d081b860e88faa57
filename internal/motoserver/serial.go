package motoserver

import (
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// SerialHTTPClient returns an HTTP client for an AWS SDK configuration that sends one request
// to moto at a time. moto runs requests on threads without making each one atomic (a failed
// DynamoDB transaction restores a copy of the table taken before its checks; a conditional
// PutObject checks, then writes), while DynamoDB and S3 apply each request atomically.
// Serializing the requests restores that for tests of concurrent handlers, which still
// interleave at request granularity, as they do on AWS:
//
//	cfg := motoserver.AWSConfig(t, srv.Endpoint)
//	cfg.HTTPClient = motoserver.SerialHTTPClient()
//
// moto answers only once it has processed a request, so holding the lock until the response
// headers arrive is enough.
func SerialHTTPClient() aws.HTTPClient {
	return &serialClient{inner: awshttp.NewBuildableClient()}
}

type serialClient struct {
	mu    sync.Mutex
	inner aws.HTTPClient
}

func (c *serialClient) Do(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner.Do(r)
}
