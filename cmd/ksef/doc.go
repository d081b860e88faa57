// Command ksef works with KSeF 2.0, Poland's national e-invoicing system, from the command line,
// with the client in package pkg/ksef.
//
// Usage:
//
//	ksef <command> [flags] [arguments]
//	ksef help [command]
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
package main
