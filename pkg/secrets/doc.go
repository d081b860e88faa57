// Package secrets keeps the KSeF credentials and the KSeF session state of each taxpayer (NIP)
// in AWS Secrets Manager, so that no token, key or certificate ever travels in Step Functions
// state or reaches a log.
//
// # Usage
//
// Build one Store per process (in a Lambda function's main, next to the KSeF client) and share
// it between invocations:
//
//	sm := secretsmanager.NewFromConfig(awsCfg)
//	store := secrets.New(sm, secrets.WithLogger(logger))
//
//	creds, err := store.Credentials(ctx, nip)        // login: token or certificate and key
//	...
//	_, err = store.Update(ctx, nip, func(st *secrets.State) error {
//		st.PendingAuth = &secrets.PendingAuth{ReferenceNumber: ref, ...}
//		return nil
//	})
//	...
//	_, err = store.SaveTokens(ctx, nip, redeemed)    // after POST /auth/token/redeem
//	...
//	tok, err := store.AccessToken(ctx, nip, client)  // any business call; refreshes as needed
//	if errors.Is(err, secrets.ErrLoginRequired) {
//		// start a new authentication
//	}
//
// store.TokenSource(nip, client) adapts AccessToken to the KSeF client's token source.
//
// # Secrets
//
// Two secrets per NIP; WithNames changes the names. Both hold JSON in SecretString.
//
// The credentials secret, "ksef/<NIP>/credentials", is written by the user or the onboarding
// tool and only read by the pipeline:
//
//	{
//	  "nip": "5265877635",
//	  "environment": "test",               // "test", "demo" or "prod"
//	  "baseUrl": "http://127.0.0.1:8080/v2", // optional: replaces the environment's API URL
//	  "authMethod": "token",               // "token" or "xades"
//	  "ksefToken": "...",                  // required for "token"
//	  "certificatePem": "-----BEGIN CERTIFICATE-----\n...", // required for "xades"
//	  "privateKeyPem": "-----BEGIN PRIVATE KEY-----\n..."   // required for "xades", unencrypted
//	}
//
// Unknown fields are rejected. The NIP must match the KSeF pattern (and, for prod, its check
// digit) and equal the NIP the secret is read for; a "xades" certificate and key must parse with
// ksef.ParsePEM and belong together. A bad secret gives a *CredentialsError naming the field.
//
// The state secret, "ksef/<NIP>/session", is read and written by the pipeline only; Update
// creates it on the first write:
//
//	{
//	  "accessToken":  {"token": "eyJ...", "validUntil": "2026-03-02T10:15:00Z"},
//	  "refreshToken": {"token": "eyJ...", "validUntil": "2026-03-09T10:00:00Z"},
//	  "tokenIssuedAt": "2026-03-02T10:00:00Z",
//	  "tokenOwner": "c-3f9a1c0e5b7d2a64",
//	  "pendingAuth": {"referenceNumber": "20260302-AU-...", "authenticationToken": {"token": "...",
//	                  "validUntil": "..."}, "startedAt": "...", "method": "token"},
//	  "session": {"handle": {"referenceNumber": "20260302-SO-...", "formCode": {...},
//	              "validUntil": "...", "key": "<base64 AES-256 key>", "iv": "<base64>"},
//	              "invoicesSent": 12, "openedAt": "..."},
//	  "updatedAt": "2026-03-02T10:00:00.123Z",
//	  "updatedBy": "c-3f9a1c0e5b7d2a64/42"
//	}
//
// Every field may be absent. Unknown fields are ignored, so that versions of the pipeline can
// overlap during a deployment. Every write sets updatedAt and updatedBy (the writing Store
// instance and a sequence number).
//
// # Compare-and-swap on Secrets Manager
//
// Secrets Manager has no conditional write, but PutSecretValue is idempotent on its
// ClientRequestToken, which becomes the new VersionId: repeating a token with the same value
// succeeds and does nothing, repeating it with another value fails with
// ResourceExistsException. Update therefore writes the version that follows the one it read
// under a token derived from the VersionId it read: a UUID-shaped string made of SHA-256 over
// the secret name and that VersionId. Of all the writers that read version V exactly one can
// create the version after V; the others get ResourceExistsException, read again and reapply
// their change, a bounded number of times with jittered backoff, then fail with ErrConflict.
// Because updatedBy differs in every write, two writers never send equal content under one
// token (which would let both succeed).
// A writer whose read was stale fails the same way, so the scheme does not rely on
// read-after-write consistency. When the state secret does not exist, CreateSecret (with the
// token that follows the empty version) plays the same role, and the losers of a creation race
// see ResourceExistsException like any other loser. The tokens also make the SDK's own retries
// of a write safe. Two limits: every writer must use Update (a version written with an
// unrelated token is not detected by a writer that read the version before it), and the scheme
// needs the versions it collides with to still exist, which Secrets Manager guarantees for 24
// hours.
//
// # Access tokens without stampedes
//
// Many Lambda execution environments may serve one NIP at a time. Each has its own Store (an
// instance, named in the state by a random id) which keeps the state it last read, with its
// VersionId, in memory. KSeF access tokens live about 15 minutes; the refresh token up to 7
// days and is not rotated by a refresh.
//
//   - AccessToken hands out the token it holds in memory, with no call at all, while the token
//     is valid for longer than the Store's refresh threshold.
//   - Past the threshold, one goroutine per Store and NIP does the work and the others wait for
//     its result. It first reads the state again, bypassing the cache: if another process has
//     already refreshed, it adopts that token without calling KSeF. Otherwise, if the refresh
//     token is still valid, it refreshes and writes the new token with compare-and-swap; a
//     writer that loses finds the winner's token, keeps it and discards its own. Without a
//     usable refresh token the answer is ErrLoginRequired; so is a refresh that KSeF rejects for
//     good (401 or exception 21301), after which the dead tokens are removed from the state so
//     that other processes do not try them again.
//   - The process that refreshed records itself as TokenOwner. The owner's threshold is the
//     refresh margin m (WithRefreshMargin, 2 minutes by default, at most half the token's
//     lifetime). Every other process waits until the token has between m/4 and m/2 left (the
//     exact point differs per process), by which time the owner has normally stored a new
//     token, which they pick up with one read. So in steady state exactly one process calls
//     KSeF and writes. If the owner is gone (its execution environment was recycled), the
//     others refresh at their own thresholds, which are spread over m/4..m/2, and the first one
//     becomes the owner. After a login nobody owns the token and the thresholds are spread over
//     m/2..m. Only processes that reach their thresholds within the same few hundred
//     milliseconds can both refresh; even then a single write succeeds.
//   - Every token AccessToken returns is valid for more than m/4 (30 s by default).
//   - KSeF may refuse an access token before its validUntil (HTTP 401 on a business call: the
//     authentication was revoked, or KSeF's clock is ahead of ours). DropAccessToken removes
//     the token this Store handed out from memory and, unless another process has already
//     replaced it, from the state, so that the next AccessToken refreshes it once for everybody
//     or adopts the replacement.
//
// Per NIP and access-token lifetime, with N execution environments calling AccessToken, that
// costs in steady state: one KSeF refresh, one PutSecretValue and N GetSecretValue calls; all
// other AccessToken calls are answered from memory. With 15-minute tokens and the default margin
// that is one write every 13 minutes, inside AWS's advice not to update a secret more often
// than every 10 minutes on average (each update is a version, kept for at least 24 hours).
// The pipeline's other writes (pending authentication, session open and close, invoice counts)
// share that budget: keep them coarse.
//
// # What never leaks
//
// Tokens, keys and PEM data are ksef.Secret or ksef.SecretBytes values, which print and log as
// "[REDACTED]"; errors quote names, NIPs, VersionIds, times and field names only, and JSON
// decoding errors are rewritten so that no byte of a secret document is quoted. Log lines go to
// the WithLogger logger (discarded by default) and carry the same kind of data.
package secrets
