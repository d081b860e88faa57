// Package secretstest provides an in-memory AWS Secrets Manager for tests, with the version
// rules that secrets.Store builds its compare-and-swap on:
//
//   - PutSecretValue and CreateSecret with a value require a ClientRequestToken, which becomes
//     the VersionId of the new version and moves the AWSCURRENT label to it;
//   - a ClientRequestToken that names an existing version succeeds without effect when the value
//     is the same, and fails with ResourceExistsException when it differs;
//   - CreateSecret of an existing name fails with ResourceExistsException; one without a value
//     creates a secret that has none;
//   - GetSecretValue of a missing secret, or of one without a current value, and
//     PutSecretValue to a missing secret fail with ResourceNotFoundException.
//
// The fake satisfies secrets.API; this package does not import package secrets, so that package's
// own tests can use it too. Pin the interface in the test that uses it:
//
//	var _ secrets.API = (*secretstest.SecretsManager)(nil)
//
//	func TestSomething(t *testing.T) {
//		sm := secretstest.New()
//		sm.SetJSON(t, "ksef/5265877635/credentials", creds) // as a user or a tool would
//		store := secrets.New(sm)
//		// ... run the code under test ...
//		var st secrets.State
//		sm.DecodeJSON(t, "ksef/5265877635/session", &st)
//		if n := sm.Counts().Conflicts; n != 1 { ... }
//	}
//
// BeforeGet and BeforePut run before each call: tests use them to slip in a competing write
// between a read and a write, or to make a call fail.
package secretstest
