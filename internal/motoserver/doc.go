// Package motoserver runs a local moto server (https://github.com/getmoto/moto), an emulator of
// the AWS APIs, for integration tests of code that calls AWS, and builds aws-sdk-go-v2
// configurations that point at it.
//
// One server is started per test binary, on a free loopback port, the first time a test asks
// for it; Main stops it when the tests end:
//
//	func TestMain(m *testing.M) { motoserver.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		srv := motoserver.Start(t)
//		srv.Reset(t) // forget what earlier tests created
//		cfg := motoserver.AWSConfig(t, srv.Endpoint)
//		sm := secretsmanager.NewFromConfig(cfg)
//		...
//	}
//
// The moto_server command comes with `pip install 'moto[server]'`. When it is not on PATH,
// Start skips the test with a message saying so, unless the environment variable CI is set:
// then it fails, because CI must run these tests. The server process is also killed if the test
// binary dies without running Main's cleanup (Linux: parent-death signal).
//
// Tests that share the server and call Reset must not run in parallel with each other; tests
// that do run in parallel should use distinct resource names instead.
package motoserver
