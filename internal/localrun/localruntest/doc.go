// Package localruntest holds the test helper shared by the end-to-end tests that run the local
// stack (package localrun): e2e, cmd/ksef and cmd/ksef-local.
//
//	func TestSomething(t *testing.T) {
//		root, rie := localruntest.RequireTools(t)
//		...
//	}
//
// It is a package of its own so that the localrun package, which cmd/ksef-local links, does not
// import package testing.
package localruntest
