// Package emulator is a local, in-memory emulator of the KSeF 2.0 API (Poland's National e-Invoice
// System) as its TEST environment behaves, for tests, demos and CI where the real service cannot
// be reached. It is built from the official OpenAPI description (API 2.6.0) and integrator guide,
// not from any client, and every response it gives conforms to that description.
//
// # Use in Go tests
//
// Package emutest starts an emulator behind an httptest server with a fake clock and OpenAPI
// validation of every request and response:
//
//	srv := emutest.NewServer(t, emulator.Config{Tokens: map[string][]string{"5265877635": {"my-token"}}})
//	client := myclient.New(srv.URL) // base URL ending in /v2
//	... start a login ...
//	srv.Clock.Advance(emulator.DefaultAuthDelay) // authentication 100 -> 200, without sleeping
//
// Or build one directly and serve [Emulator.Handler] yourself:
//
//	e, err := emulator.New(cfg, emulator.WithLogger(logger))
//	http.ListenAndServe("127.0.0.1:8080", e.Handler())
//
// The command ksef-emulator serves one over HTTP (see cmd/ksef-emulator).
//
// # What it emulates
//
//   - Encryption keys: GET /security/public-key-certificates lists two self-signed RSA-2048
//     certificates (usages KsefTokenEncryption and SymmetricKeyEncryption) with certificateId and
//     publicKeyId computed as KSeF does; [Emulator.RotateKeys] rotates them (planned: old and new
//     listed for Config.KeyOverlap; emergency: the old publicKeyId answers 21470 at once).
//   - Authentication: challenges (10 minutes, single use, timestampMs, clientIp); KSeF-token login
//     (RSA-OAEP SHA-256/MGF1-SHA-256, "token|timestampMs" split at the last "|", the token bound
//     to its context); XAdES login with the signature verified in full (enveloped or enveloping,
//     c14n 1.0/1.1/exclusive, RSA PKCS#1 v1.5, RSA-PSS, ECDSA r||s, SignedProperties and
//     SigningCertificate, auth schema 2.0 and 2.1), identity from the certificate (VATPL-<NIP>
//     seal, TINPL-<NIP> or PNOPL-<PESEL> person, the fingerprint, or for a KSeF certificate the
//     subject that enrolled it), owner, Config.Grants or granted-permission check; status 100 for Config.AuthDelay, then 200, 415, 450 or 460 with KSeF's
//     details; redeem once; refresh; HS256 JWTs with enforced expiry; authentication sessions
//     (list, revoke); authorizationPolicy IP restrictions (403 ip-not-allowed).
//   - Online sessions (form code FA (3) 1-0E FA): a symmetric key that cannot be decrypted makes
//     the session 415; per invoice the encrypted size and hash are checked at once (21402,
//     21403), the rest when processing: decryption (435), declared size and hash of the plaintext
//     (430), UTF-8 without BOM, UTF-8 declaration, no processing instructions or DTD,
//     well-formedness and the FA(3) XSD (450 with the validator's messages), size limits (430),
//     attachments (415), seller NIP = context NIP (410), issue date not after today in Warsaw
//     (450), duplicates of seller NIP + RodzajFaktury + P_2 (440 with originalKsefNumber and
//     originalSessionReferenceNumber). Accepted invoices get a KSeF number with a valid CRC-8,
//     acquisitionDate, permanentStorageDate (Config.StorageDelay later), invoicingMode (Offline
//     when declared or issued on an earlier day) and a pre-signed UPO link.
//   - Invoice status 100 until Config.AcceptDelay after arrival, 150 for Config.ProcessingDelay,
//     then final; session 100 while open, 170 after close (or expiry after
//     Config.OnlineSessionTTL) until processed, then 200 (with upo.pages), 440 (no invoices) or
//     445 (no valid invoices). Closed or expired sessions refuse invoices with 21180, unknown ones
//     with 21173, full ones (Config.MaxInvoicesPerSession) with 21155.
//   - Batch sessions: POST /sessions/batch checks the declared package (21405 form code, fields,
//     hashes, ordinal numbers 1..n; 21161 over 50 parts; 21157 a part over 100 MB before
//     encryption, a size no AES-CBC ciphertext has, or part sizes that cannot add up to
//     fileSize; 21470 unknown key) and answers partUploadRequests: pre-signed PUT links under
//     /upload/ (x-ms-blob-type: BlockBlob required, Authorization ignored, 201; another method or
//     header 400, bad signature or BatchPartUploadWindow × parts after opening 403, after close
//     403). POST /sessions/batch/{ref}/close gives 21205 for a part never uploaded, 21157 for
//     one whose upload differs from its declared size, 21208 after the upload window (the
//     session is then 440), then processes the package before answering 204: each part's hash,
//     decryption of each part on its own, the archive's size and hash (405, 435), unpacking ZIP
//     or tar.gz (430), the invoice limit (420), then every file verified on all cores like an
//     online invoice (attachments allowed), in archive order, with invoiceFileName; one bad
//     invoice does not stop the others. Session 100 until closed, 150 until processed
//     (ProcessingDelay after close, and after the last invoice is final), then 200, the package
//     failure, 440 (no files) or 445 (no valid invoice); invoices 100 -> 150 -> final from the
//     close on, invoicingDate = the opening of the session (the moment of the offline rule).
//   - UPO v4-3 per invoice and per session (pages of 10 000), shaped like the official samples,
//     valid against the UPO XSD once the receiver name is normalised (TEST writes
//     "Ministerstwo Finansów - środowisko testowe (TE)"; set Config.EnvironmentName to "PRD" for
//     the plain name). Downloads by reference, by KSeF number, by page and through pre-signed
//     links (/download/..., no bearer, expiring after Config.DownloadURLTTL), all with
//     x-ms-meta-hash. GET /invoices/ksef/{ksefNumber} returns the stored invoice once
//     permanently stored (21165 before).
//   - Lists with x-continuation-token paging: GET /sessions, GET /sessions/{ref}/invoices and
//     .../failed, GET /auth/sessions (21418 for a malformed token).
//   - Rate limits of the documented groups over sliding 1 s / 1 min / 1 h windows, per context
//     and client IP (per IP for public endpoints), 429 with Retry-After in seconds
//     (Config.RateLimits; values in GET /rate-limits). GET /limits/context.
//   - Permissions: every operation's x-required-permissions (read from the official description)
//     is enforced with 403 missing-permissions (requiredAnyOfPermissions, presentPermissions).
//     An access token carries the permissions its login held when it was issued (a refreshed one
//     sees changes): a KSeF token's own; for an XAdES login the owner's set (the subject whose
//     NIP is the context's, and the subjects Config.Grants names: CredentialsManage,
//     CredentialsRead, InvoiceRead, InvoiceWrite, Introspection, SubunitManage) plus what was
//     granted through the API. Person and entity grants and DELETE
//     /permissions/common/grants/{id} are operations (EG...) in status 100 for
//     [PermissionOperationDelay], then 200 (in force from then: the subject may log in with
//     XAdES), 410 (subjectDetails do not fit the identifier type), 430 (EnforcementOperations),
//     440 (grant to the context's owner) or 400 (revoking what is not in force); 410 Gone after 30
//     days. Person and personal permission queries, paged with pageOffset, pageSize and hasMore.
//   - KSeF tokens: POST /tokens only after an XAdES login (403 auth-method-not-allowed), in a Nip
//     or InternalId context (26002), with permissions the caller holds (26001); the token is
//     "<EC reference>|nip-<NIP>|<64 hex>", Pending for [TokenActivationDelay] (a login with it
//     ends 450 "Token nieaktywny"), then Active and logs in with exactly its permissions. GET
//     /tokens (status, description and author filters, x-continuation-token) and GET /tokens/{ref}
//     with the documented visibility; DELETE /tokens/{ref} makes it Revoking, then Revoked after
//     [TokenRevocationDelay] (login 450 "Token unieważniony", redeem and refresh 21301).
//   - KSeF certificates: limits per subject (NIP 300/100, PESEL and fingerprint 12/6; GET
//     /certificates/limits, GET /limits/subject); enrollment data from the certificate of the
//     XAdES login (25001 after a token login); enrollments (25002 after a token login) checked as
//     PKCS#10: 25004 format or signature, 25010 a key other than RSA 2048 or EC P-256, 25011 the
//     signature algorithm, 25003 a subject other than the enrollment data, 25006 and 25007 the
//     limits; after [CertificateEnrollmentDelay] the emulator's "KSeF CA" issues the certificate
//     (16-hex serial, two years, digitalSignature for Authentication, nonRepudiation for Offline;
//     status 400 for a public key another subject has certified). Retrieve, query, revoke
//     (Blocked for [CertificateRevocationDelay], then Revoked; 25008, 25009; 403 after a token
//     login). An Authentication certificate logs in with XAdES as the subject that enrolled it
//     (method InternalCertificate, trusted with verifyCertificateChain=true); Offline, blocked
//     and revoked ones give 460.
//   - Errors as KSeF writes them: the exception body by default, problem details with
//     "X-Error-Format: problem-details" (or Config.ProblemDetailsByDefault); 401, 403 and 410
//     always problem+json. X-Test-System-Warning is echoed in X-System-Warning.
//
// All state changes are computed from timestamps and the [Clock] when a request arrives: the
// emulator runs no goroutines or timers.
//
// Not emulated: invoice queries and exports, permissions other than direct person and entity
// grants (authorizations, indirect, subunit and EU-entity permissions, entity roles), the
// NIP-PESEL link of token visibility, PEF/FA_RR/FA (2) forms, the /testdata endpoints and signed
// (XAdES) UPOs.
//
// # Fault injection
//
// Faults come from Config.Faults, [Emulator.AddFault] or the admin API. httpError answers
// matching requests with 500/502/503/504, latency delays them (ending early if the client gives
// up), rateLimit answers 429 with a chosen Retry-After, stuckInvoices keeps invoices in 150 for
// ever, rejectInvoices gives them a chosen final status and details. Count limits how many
// requests or invoices a fault affects (0: until cleared).
//
// # Admin API
//
// Served outside /v2, JSON in and out, no authentication, never rate-limited or faulted:
//
//	GET    /admin/faults                 -> {"faults": [Fault, ...]} (Count = uses left, 0 = unlimited)
//	POST   /admin/faults                 Fault -> 201 Fault, e.g.
//	       {"kind": "httpError", "method": "POST", "path": "/sessions/online/*/invoices", "status": 503, "count": 2}
//	       {"kind": "latency", "path": "/auth/*", "latency": "1.5s"}
//	       {"kind": "rateLimit", "retryAfter": "30s", "count": 3}
//	       {"kind": "stuckInvoices", "nip": "5265877635", "count": 1}
//	       {"kind": "rejectInvoices", "status": 450, "details": ["..."], "count": 1}
//	DELETE /admin/faults                 -> 204, every fault cleared
//	POST   /admin/tokens                 {"nip": "5265877635", "token": "t"} -> 201; without "token"
//	                                     a KSeF-shaped token is generated and returned
//	POST   /admin/rotate-keys            {"emergency": false} -> 204
//	GET    /admin/clock                  -> {"now": "...", "offset": "1m30s"}
//	POST   /admin/clock                  {"advance": "90s"} -> {"now", "offset"}
//	POST   /admin/expire-access-tokens   {"nip": "5265877635"} -> {"expired": n}
//	POST   /admin/expire-sessions        {"nip": "5265877635"} -> {"expired": n}
//	POST   /admin/reset                  -> 204: back to the state after New
//
// Errors of the admin API are 400 {"error": "..."}.
//
// # Logging
//
// With [WithLogger], every request is logged as one line: method, path (never the query, which
// carries link signatures), status, durationMs and clientIp. Bodies, headers and tokens are never
// logged.
package emulator
