// Command ksef works with KSeF 2.0, Poland's national e-invoicing system, from the command line,
// with the client in package pkg/ksef.
//
// Usage:
//
//	ksef <command> [flags] [arguments]
//	ksef help [command]
//
// ksef send sends invoices. The other commands onboard a company: they obtain the credentials
// the serverless pipeline logs in with (a KSeF token or, lastingly, a KSeF certificate) and
// store them in AWS Secrets Manager in the format package pkg/secrets reads; see Onboarding
// below.
//
// # ksef send
//
//	ksef send [--env test|demo|prod | --base-url URL] --nip NIP [--cert FILE --key FILE]
//	          [--upo-dir DIR] [--json] [--accept-duplicates] [--timeout D] [--verbose] FILE...
//
// send sends FA(3) invoices in one online session, waits for KSeF's verdict on each and saves
// the UPO (official receipt) of each accepted invoice as DIR/<KSeF number>.xml (default: the
// current directory, created if missing). The KSeF number is unique and stable, so sending the
// same invoices from two directories cannot overwrite one UPO with another's; stdout pairs every
// file with its number. Each UPO is written to a temporary file in DIR and renamed into place.
//
// Steps:
//
//  1. Every file is checked with ksef.InspectInvoice before anything is sent: UTF-8 without a
//     BOM, well-formed XML without processing instructions, the FA(3) namespace, seller NIP
//     equal to --nip, issue date (P_1) not after today in Poland, size. A file that fails is
//     reported with the reason and is not sent; the others go on.
//  2. Login in the context of --nip: with the KSeF token in the environment variable KSEF_TOKEN
//     (never a flag, which would show in the shell history and the process list) or, given
//     --cert and --key (PEM), with an XAdES signature. The status of the login is polled every
//     second for at most two minutes.
//  3. An online session is opened and each file sent (encrypted with the session key).
//  4. The status of every invoice is polled, waiting 1 s, 2 s, 4 s ... at most 10 s between
//     rounds, until each is final. A 429 or 5xx answer is repeated, honouring Retry-After.
//  5. The UPO of each accepted invoice is downloaded and saved.
//  6. The session is closed and the authentication session revoked (its refresh token stops
//     working), also after an error, at --timeout, or on Ctrl-C (a second Ctrl-C exits at once).
//
// The access token is refreshed with the refresh token when it is about to expire.
//
// stdout has one line per file, as soon as its outcome is known:
//
//	FILE: KSeF number NUMBER (UPO: PATH)
//	FILE: rejected CODE DESCRIPTION: DETAILS
//	FILE: not sent: REASON
//	FILE: status unknown (reference REF[, last status CODE DESCRIPTION]): REASON
//
// A duplicate (status 440: KSeF already has an invoice with the same seller NIP, invoice type
// and number) is a rejection that names the original KSeF number. With --accept-duplicates it
// counts as accepted instead, is printed with the original's KSeF number, and the original's UPO
// is saved when KSeF hands it out.
//
// With --json stdout has one JSON object per file instead (JSON Lines):
//
//	{"file":"fv1.xml","accepted":true,"referenceNumber":"20260901-EE-...","ksefNumber":"9999999999-20260901-...",
//	 "statusCode":200,"statusDescription":"Sukces","upoPath":"upo/9999999999-20260901-....xml",
//	 "sessionReferenceNumber":"20260901-SO-...","invoiceNumber":"FV2026/02/150"}
//
// The fields file, accepted, referenceNumber, ksefNumber, statusCode, statusDescription and
// upoPath are always present (empty or zero when they do not apply); statusDetails,
// sessionReferenceNumber, invoiceNumber, originalKsefNumber, originalSessionReferenceNumber and
// error appear when they have a value. statusCode is KSeF's invoice status: 200 accepted, 4xx
// rejected, 100 or 150 for an invoice still in processing when the command stopped waiting, 0
// when the file never got one. error explains what went wrong on this side.
//
// Progress goes to stderr; --verbose adds a debug log of every HTTP request (log/slog text:
// method, path, status, duration). No token or key is ever printed or logged, and invoice content
// only where KSeF quotes it in a rejection's details.
//
// Exit status:
//
//	0  every invoice was accepted
//	1  some invoice was not accepted (invalid file, rejected, duplicate, not sent)
//	2  usage error: bad flags or arguments, no credentials
//	3  login or other failure: login failed, KSeF unreachable, interrupted, --timeout reached
//	   (the invoices still pending are printed with their reference numbers), or a UPO not saved
//
// Example, against the KSeF TEST environment:
//
//	export KSEF_TOKEN='20251010-EC-...|nip-5265877635|...'
//	ksef send --nip 5265877635 --upo-dir upo invoices/*.xml
//
// Against the local emulator (cmd/ksef-emulator), with an official sample invoice:
//
//	ksef-emulator --addr 127.0.0.1:8080 --token 9999999999=local-token &
//	KSEF_TOKEN=local-token ksef send --base-url http://127.0.0.1:8080/v2 --nip 9999999999 \
//	    --upo-dir upo internal/official/samples/invoices/FA_3_Przyklad_1.xml
//
// The default environment is test, where invoices have no legal effect; --env prod sends
// legally binding ones.
//
// # Onboarding
//
// Before the pipeline can send anything, the company authenticates with a qualified signature
// or seal (on KSeF TEST a self-signed certificate will do), grants permissions if someone else
// is to act for it, and obtains credentials for the pipeline. A typical run against TEST:
//
//	ksef cert self-signed --nip 5265877635                 # ksef-test-5265877635.crt/.key
//	ksef login --nip 5265877635 --cert ksef-test-5265877635.crt --key ksef-test-5265877635.key
//	ksef cert enroll --nip 5265877635 --cert ksef-test-5265877635.crt --key ksef-test-5265877635.key
//	ksef secrets show --nip 5265877635
//
// After that the credentials secret ksef/5265877635/credentials holds the KSeF certificate and
// its new key with authMethod "xades", and the pipeline logs in with them. On DEMO and
// production the first login needs a qualified seal or signature, given as --p12 (PKCS #12,
// password in the environment variable KSEF_P12_PASSWORD) or --cert and --key (PEM).
//
// Common flags of every command that logs in: --env test|demo|prod (default test) or
// --base-url URL (an emulator); --nip NIP, the context (the company); the credentials: --cert
// FILE --key FILE (PEM, unencrypted key), --p12 FILE, or else the KSeF token in KSEF_TOKEN;
// --timeout D (default 5m) for the whole command; --verbose for a debug log of every HTTP
// request. Each such command logs in (challenge, submission, status polled every second,
// tokens redeemed), does its work and logs out again (the refresh token is revoked), also after
// an error, --timeout or Ctrl-C. Long waits (login, permission operations, token activation,
// certificate enrollment) show progress on stderr; waits between status calls grow 1 s, 2 s,
// 4 s ... up to 10 s. A failure prints KSeF's HTTP status, exception codes and details, or the
// status code, description and details of the failed operation. Tokens, keys and JWTs are never
// printed or logged, except the token of ksef token generate --print.
//
// Commands that write the credentials secret (secrets put, token generate, cert enroll) take
// --secret-id SECRET (default ksef/<NIP>/credentials) and --kms-key-id KEY (for a secret they
// create) and use the AWS SDK's default configuration (AWS_PROFILE, AWS_REGION,
// AWS_ENDPOINT_URL...). They read the secret before they create anything, merge the new
// credential into it (the other fields are kept while the environment and base URL stay the
// same; authMethod switches to the new credential), validate the result with
// secrets.ParseCredentials, and write it as the version that follows the one read, with a
// ClientRequestToken derived from that version: if someone changed the secret in between,
// nothing is written. They print what was stored with every secret masked.
//
// # ksef cert self-signed
//
//	ksef cert self-signed (--nip NIP [--person] | --pesel PESEL) [--key-type rsa|ecdsa]
//	          [--name CN] [--given-name NAME --surname NAME | --org NAME]
//	          [--out PREFIX] [--format pem|p12] [--force]
//
// Makes a self-signed certificate and key shaped like a qualified one, for XAdES logins on KSeF
// TEST only: a company seal (organizationIdentifier VATPL-<NIP>) for --nip, a person
// (serialNumber TINPL-<NIP>) for --nip --person, a person (serialNumber PNOPL-<PESEL>) for
// --pesel. Valid from 61 minutes ago for two years. Writes PREFIX.crt and PREFIX.key (default
// prefix ksef-test-<NIP or PESEL>; the key with mode 0600) or PREFIX.p12 with the password in
// KSEF_P12_PASSWORD; existing files are kept unless --force.
//
// # ksef login
//
//	ksef login [--env ... | --base-url URL] --nip NIP [--cert FILE --key FILE | --p12 FILE]
//	          [--json] [--timeout D] [--verbose]
//
// Logs in, prints what KSeF recognised (authentication reference number, method, certificate
// subject, token validity; no token) and logs out: a check that credentials work.
//
// # ksef auth sign-request
//
//	ksef auth sign-request --nip NIP --out FILE (--cert FILE --key FILE | --p12 FILE)
//	          [--challenge C | --env ... | --base-url URL] [--fingerprint]
//
// Writes the AuthTokenRequest document of an XAdES login (namespace
// http://ksef.mf.gov.pl/auth/token/2.0) for the context NIP, signed with an enveloped XAdES-BES
// signature exactly as ksef login signs it, for an outside verifier (xmlsec1, the EU DSS) or
// another tool. The challenge is fetched from KSeF unless --challenge gives one; --fingerprint
// makes the signer's identity the certificate's SHA-256 fingerprint (certificateFingerprint).
//
// # ksef permissions grant, list, revoke
//
//	ksef permissions grant [login flags] (--pesel PESEL | --person-nip NIP)
//	          --first-name NAME --last-name NAME --permission P[,P...] [--description TEXT]
//	ksef permissions grant [login flags] --entity NIP --entity-name NAME [--can-delegate]
//	          --permission InvoiceWrite|InvoiceRead [--description TEXT]
//	ksef permissions list [login flags] [--mine] [--json]
//	ksef permissions revoke [login flags] ID
//
// grant gives a person (by PESEL or NIP) or an entity (by NIP) permissions in the context and
// waits for KSeF's permission operation to finish; it needs CredentialsManage (the owner has
// it). Persons can get InvoiceWrite, InvoiceRead, CredentialsManage, CredentialsRead,
// Introspection, SubunitManage and EnforcementOperations; entities InvoiceWrite and InvoiceRead.
// list shows the permissions in force in the context (ID, holder, permission, state, granted
// by, since, description) or, with --mine, the logged-in subject's own. revoke takes an ID from
// list and waits for the operation.
//
// # ksef token generate, status, list, revoke
//
//	ksef token generate [login flags with a certificate] [--permission P[,P...]]
//	          [--description TEXT] [--print] [--secret-id SECRET] [--kms-key-id KEY]
//	ksef token status [login flags] [--json] REFERENCE
//	ksef token list [login flags] [--status S[,S...]] [--json]
//	ksef token revoke [login flags] REFERENCE
//
// generate makes a KSeF token (default permission InvoiceWrite, what the pipeline needs; KSeF
// issues tokens only after a signature login), waits until it is Active, and stores it in the
// credentials secret with authMethod "token". KSeF shows a token once: --print writes it to
// stdout instead and stores nothing. If storing fails, the token is revoked again. KSeF tokens
// are a legal means of authentication until 2026-12-31; prefer ksef cert enroll. status, list
// and revoke show, list and revoke tokens of the context (revoke waits until Revoked).
//
// # ksef cert enroll, list, revoke
//
//	ksef cert enroll [login flags with a certificate] [--name NAME] [--type Authentication|Offline]
//	          [--key-type ecdsa|rsa] [--valid-from TIME] [--out PREFIX [--force]] [--no-store]
//	          [--secret-id SECRET] [--kms-key-id KEY]
//	ksef cert list [login flags] [--status S] [--type T] [--json]
//	ksef cert revoke [login flags with a certificate] [--reason R] SERIAL
//
// enroll obtains a KSeF certificate: certificate limits, enrollment data (the subject
// attributes KSeF requires), a new key (ECDSA P-256 by default, or RSA 2048) and a PKCS #10
// request with exactly those attributes, the enrollment, its status polled until the
// certificate is issued, the download, a check that the certificate certifies the new key.
// The certificate and key are stored in the credentials secret with authMethod "xades" (and
// written to PREFIX.crt and PREFIX.key with --out; --no-store stores nothing and needs --out).
// An Offline certificate (QR code II only) cannot log in: it needs --out and is never stored.
// If storing fails and there is no --out copy, the certificate is revoked again. list shows
// the logged-in subject's KSeF certificates; revoke revokes one (Unspecified, Superseded or
// KeyCompromise).
//
// # ksef secrets put, show
//
//	ksef secrets put --nip NIP (--token-from-env | --cert FILE --key FILE | --p12 FILE)
//	          [--env ... | --base-url URL] [--secret-id SECRET] [--kms-key-id KEY] [--check] [--replace]
//	ksef secrets show --nip NIP [--secret-id SECRET] [--json]
//
// put writes credentials obtained elsewhere into the credentials secret: the KSeF token in
// KSEF_TOKEN (authMethod "token") or a certificate and key (authMethod "xades"; the key is
// stored unencrypted as PKCS #8, a chain from the file follows the certificate). --check logs
// in with them first and stores nothing if that fails; --replace ignores the secret's current
// content. show prints the secret with the token masked to the first four characters of its
// reference part, the certificate as subject, issuer, serial number, validity and fingerprint,
// the key as its type, and whether the pipeline accepts the secret.
package main
