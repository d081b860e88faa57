// Package ksef is a client for KSeF 2.0, Poland's national e-invoicing system (Krajowy System
// e-Faktur): authentication, online sessions, invoice sending and status, UPO downloads, limits,
// KSeF tokens, permissions and KSeF certificates, plus the pure helpers around them (XAdES signing
// of the login document, certificate signing requests, invoice inspection, KSeF numbers,
// verification links).
//
// # Building a client
//
// One Client holds the transport, base URL, retry policy and logger; build it once and share
// it:
//
//	c, err := ksef.NewClient(
//		ksef.WithEnvironment(ksef.Prod),
//		ksef.WithAccessToken(tokens), // an AccessTokenSource, e.g. backed by a secret store
//		ksef.WithLogger(logger),
//	)
//
// WithBaseURL points it at any base URL ending in /v2 (the local emulator, an httptest
// server).
//
// # Logging in
//
// A login is asynchronous: get a challenge, submit a KSeF token or a signed XAdES document,
// poll the operation's status, then redeem the tokens once:
//
//	ch, err := c.Challenge(ctx)
//	init, err := c.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{
//		Challenge: ch, Context: ksef.NipContext(nip), Token: ksefToken,
//	})
//	st, err := c.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token)
//	// ... until st.Status.Code is 200 (>= 400 means the login failed)
//	tokens, err := c.RedeemTokens(ctx, init.AuthenticationToken.Token)
//
// AuthenticateWithCertificate does the challenge, document, signature and submission in one
// call. RefreshAccessToken renews the access token with the refresh token.
//
// # Sending invoices
//
// Business calls carry the access token from the client's AccessTokenSource:
//
//	s, err := c.OpenOnlineSession(ctx, ksef.FormCodeFA3())
//	sent, err := c.SendInvoice(ctx, s, invoiceXML, nil)
//	st, err := c.InvoiceStatus(ctx, s.ReferenceNumber, sent.ReferenceNumber)
//	// ... until st.Status.Code is 200 (KSeF number assigned) or >= 400 (rejected)
//	upo, err := c.Download(ctx, st.UPODownloadURL)
//	err = c.CloseOnlineSession(ctx, s.ReferenceNumber)
//
// The SessionHandle holds the session's AES key; it can be stored (in a secret store) and used
// by another process. The client encrypts invoices with it (AES-256-CBC, PKCS#7) and wraps it
// for KSeF with the Ministry of Finance's public key (RSA-OAEP, SHA-256), which it fetches,
// picks by usage and validity, and caches; when KSeF reports the key as retired (21470) the
// client fetches the keys again and retries once.
//
// # Sending a batch
//
// Many invoices (up to 10 000 by default) go in one batch session: build the package (an archive
// with one file per invoice, cut into parts, each encrypted with a fresh key), open the session,
// upload the parts to the pre-signed links KSeF returns, close it, then follow it like an online
// session:
//
//	pkg, err := ksef.BuildBatch(invoices, ksef.BatchOptions{}) // []ksef.BatchInvoice{{FileName, Content}}
//	s, err := c.OpenBatchSession(ctx, ksef.FormCodeFA3(), pkg, nil)
//	err = c.UploadBatchParts(ctx, s, pkg, 0)
//	err = c.CloseBatchSession(ctx, s.Handle.ReferenceNumber)
//	st, err := c.SessionStatus(ctx, s.Handle.ReferenceNumber)
//	// ... until st.Status.Code is 200 (or >= 400), then SessionInvoices, FailedSessionInvoices
//
// # Onboarding: KSeF tokens, permissions and KSeF certificates
//
// After an XAdES login (AuthenticateWithCertificate) a company can create KSeF tokens, give
// people and other companies permissions in its context, and obtain KSeF certificates. Each of
// these is asynchronous, like a login:
//
//	gen, err := c.GenerateToken(ctx, ksef.TokenRequest{
//		Permissions: []ksef.Permission{ksef.PermissionInvoiceWrite}, Description: "Wysyłka faktur",
//	}) // gen.Token is shown once: store it now; usable when TokenStatus says TokenActive
//	op, err := c.GrantPersonPermissions(ctx, ksef.PersonGrant{
//		Subject: ksef.PeselSubject(pesel), Permissions: []ksef.Permission{ksef.PermissionInvoiceRead},
//		Description: "Księgowość", SubjectDetails: ksef.PersonDetails{FirstName: "Anna", LastName: "Nowak"},
//	})
//	st, err := c.PermissionOperationStatus(ctx, op.ReferenceNumber) // until 200 (or >= 400)
//
//	data, err := c.EnrollmentData(ctx)          // the DN KSeF will certify
//	csr, err := ksef.NewCSR(data, key)          // key: ECDSA P-256 (recommended) or RSA 2048
//	op, err = c.Enroll(ctx, ksef.EnrollmentRequest{CertificateName: "Serwer", CertificateType: ksef.CertificateAuthentication, CSR: csr})
//	es, err := c.EnrollmentStatus(ctx, op.ReferenceNumber) // until 200: es.CertificateSerialNumber
//	certs, err := c.RetrieveCertificates(ctx, []string{es.CertificateSerialNumber})
//	cert, err := certs[0].X509() // logs in with AuthenticateWithCertificate(ctx, id, key, cert)
//
// The lists (Tokens, QueryPersonPermissions, QueryPersonalPermissions, QueryCertificates) page
// like the others: a continuation token for tokens, PageRequest and HasMore for the queries.
//
// # Errors, retries and waiting
//
// Every non-2xx answer is an *APIError, whichever of KSeF's error bodies it came with; use
// errors.Is with ErrUnauthorized, ErrForbidden, ErrNotFound, ErrRateLimited and ErrGone, or
// errors.As and APIError.HasCode. Outcomes of asynchronous operations (a failed login, a
// rejected invoice) are not errors: they are HTTP 200 answers whose Status.Code is 400 or more.
//
// The client retries network failures, 429 and, for calls that are safe to repeat, 502/503/504,
// with capped exponential backoff and full jitter, never waiting less than Retry-After. It does
// not wait when the wait would outlast the context's deadline, is longer than
// RetryPolicy.MaxRetryAfter, or RetryPolicy.HandBack is set: it returns the *APIError with
// RetryAfter set, so that a Lambda function can hand the wait to a Step Functions Wait state
// instead of sleeping. Status polling is one call per method for the same reason.
//
// Tokens, keys and invoice bodies never appear in errors or logs: Secret and SecretBytes print
// as "[REDACTED]", and text taken from KSeF's error bodies is scrubbed of anything that looks
// like a token.
package ksef
