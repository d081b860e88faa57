package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func selfSignedUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef cert self-signed (--nip NIP [--person] | --pesel PESEL) [--key-type rsa|ecdsa]
                  [--name CN] [--given-name NAME --surname NAME | --org NAME]
                  [--out PREFIX] [--format pem|p12] [--force]

Make a self-signed certificate and its private key shaped like a qualified one, for XAdES logins
on the KSeF TEST environment (DEMO and production accept only qualified certificates and KSeF
certificates). The certificate is valid from 61 minutes ago for two years, with the key usages
digitalSignature and nonRepudiation.

  --nip NIP            a company seal: organizationIdentifier VATPL-<NIP>, organizationName, CN
  --nip NIP --person   a person identified by NIP: serialNumber TINPL-<NIP>, givenName, surname
  --pesel PESEL        a person identified by PESEL: serialNumber PNOPL-<PESEL>

A seal and a person with the company's NIP may act in that NIP's context as its owner; a
person by PESEL needs permissions granted first (ksef permissions grant --pesel).

Writes PREFIX.crt and PREFIX.key (PEM; the key unencrypted, mode 0600) or, with --format p12,
PREFIX.p12 protected with the password in KSEF_P12_PASSWORD. Existing files are kept unless
--force is given.

Flags:
`)
		printFlags(w, fs)
	}
}

// runCertSelfSigned is ksef cert self-signed.
func runCertSelfSigned(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef cert self-signed", flag.ContinueOnError)
	var opts ksef.TestCertificateOptions
	fs.StringVar(&opts.NIP, "nip", "", "`NIP` of the company (a seal) or, with --person, of the person")
	fs.StringVar(&opts.PESEL, "pesel", "", "`PESEL` of the person")
	person := fs.Bool("person", false, "with --nip: a person identified by NIP instead of a company seal")
	keyType := fs.String("key-type", string(ksef.KeyRSA), "`TYPE` of the key: rsa (2048 bits) or ecdsa (P-256)")
	fs.StringVar(&opts.CommonName, "name", "", "common name (CN); default: the person's name or the organization")
	fs.StringVar(&opts.GivenName, "given-name", "", "a person's given `NAME` (default Jan)")
	fs.StringVar(&opts.Surname, "surname", "", "a person's surname `NAME` (default Testowy)")
	fs.StringVar(&opts.Organization, "org", "", "a seal's organization `NAME` (default \"Test Organization <NIP>\")")
	out := fs.String("out", "", "`PREFIX` of the files to write (default ksef-test-<NIP or PESEL>)")
	format := fs.String("format", "pem", "`FORMAT` of the files: pem (PREFIX.crt and PREFIX.key) or p12 (PREFIX.p12)")
	force := fs.Bool("force", false, "overwrite existing files")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, selfSignedUsage(fs))
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case (opts.NIP == "") == (opts.PESEL == ""):
		return usagef("give --nip or --pesel")
	case *person && opts.NIP == "":
		return usagef("--person goes with --nip")
	case *format != "pem" && *format != "p12":
		return usagef("--format must be pem or p12")
	case *format == "p12" && x.env.getenv(p12PasswordEnv) == "":
		return usagef("--format p12: set the file's password in %s", p12PasswordEnv)
	}
	opts.Seal = opts.NIP != "" && !*person
	opts.KeyType = ksef.KeyType(*keyType)
	opts.Now = x.env.now()
	id := opts.NIP + opts.PESEL
	if *out == "" {
		*out = "ksef-test-" + id
	}
	cert, key, err := ksef.NewTestCertificate(opts)
	if err != nil {
		return usagef("%s", plain(err))
	}
	var files []string
	switch *format {
	case "pem":
		certPEM, keyPEM, err := ksef.EncodePEM(cert, key)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if err := writeNew(*out+".key", keyPEM, 0o600, *force); err != nil {
			return err
		}
		if err := writeNew(*out+".crt", certPEM, 0o644, *force); err != nil {
			return err
		}
		files = []string{*out + ".crt", *out + ".key"}
	case "p12":
		data, err := pkcs12.Modern.Encode(key, cert, nil, x.env.getenv(p12PasswordEnv))
		if err != nil {
			return fmt.Errorf("encode PKCS #12: %w", err)
		}
		if err := writeNew(*out+".p12", data, 0o600, *force); err != nil {
			return err
		}
		files = []string{*out + ".p12"}
	}
	for _, f := range files {
		fmt.Fprintf(x.stdout, "wrote %s\n", f)
	}
	printCertificate(x.stdout, "", cert, key)
	fmt.Fprintln(x.stdout, "KSeF TEST accepts this certificate; DEMO and production do not.")
	return nil
}

// printCertificate writes what identifies a certificate, one "name: value" line each, indented
// by indent. key, if not nil, adds the key's type.
func printCertificate(w io.Writer, indent string, cert *x509.Certificate, key crypto.Signer) {
	fmt.Fprintf(w, "%ssubject:      %s\n", indent, dn(cert.Subject))
	if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		fmt.Fprintf(w, "%sissuer:       %s\n", indent, dn(cert.Issuer))
	} else {
		fmt.Fprintf(w, "%sissuer:       (self-signed)\n", indent)
	}
	fmt.Fprintf(w, "%sserial:       %s\n", indent, hexSerial(cert))
	fmt.Fprintf(w, "%svalid:        %s to %s\n", indent, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%sfingerprint:  %s (SHA-256)\n", indent, fingerprintOf(cert))
	if key != nil {
		fmt.Fprintf(w, "%skey:          %s\n", indent, keyDescription(key.Public()))
	}
}

// keyDescription names a public key's algorithm and size.
func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

// writeNew writes data to a new file with the given permissions; an existing file is an error
// unless force is set.
func writeNew(name string, data []byte, perm fs.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(name, flags, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists (use --force to overwrite it)", name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if force {
		// An existing file keeps its mode on O_TRUNC: a key must not stay world-readable.
		if err := f.Chmod(perm); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// defaultCertificateName is the name of KSeF certificates enrolled for the pipeline.
const defaultCertificateName = "ksef-serverless pipeline"

func enrollUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef cert enroll [--env test|demo|prod | --base-url URL] --nip NIP
                  (--cert FILE --key FILE | --p12 FILE) [--name NAME] [--type Authentication|Offline]
                  [--key-type ecdsa|rsa] [--valid-from TIME] [--out PREFIX [--force]] [--no-store]
                  [--secret-id SECRET] [--kms-key-id KEY] [--timeout D] [--verbose]

Obtain a KSeF certificate for the subject that logs in, and store it with its new private key in
the NIP's credentials secret in AWS Secrets Manager (authMethod "xades"; the secret's other
fields, a KSeF token say, are kept), from where the pipeline logs in with it.

Steps: log in with a signature (a qualified seal or signature, or on TEST a self-signed
certificate: ksef cert self-signed); check the certificate limits; fetch the enrollment data
(the subject attributes KSeF requires); make a key (ECDSA P-256 by default, or RSA 2048) and a
certificate signing request with exactly those attributes; enroll; wait until KSeF has issued
the certificate; download it and check that it certifies the new key; store certificate and key.

The key never leaves this machine except into the secret (or --out). --out PREFIX also writes
PREFIX.crt and PREFIX.key (mode 0600); --no-store stores nothing and needs --out. An Offline
certificate (for QR code II of offline invoices) cannot log in: it needs --out and is never
stored. The credentials secret is read before anything is enrolled; if storing fails after all
and no --out copy exists, the new certificate is revoked again.

Flags:
`)
		printFlags(w, fs)
	}
}

// runCertEnroll is ksef cert enroll.
func runCertEnroll(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef cert enroll", flag.ContinueOnError)
	var l loginFlags
	var sf storeFlags
	l.register(fs)
	sf.register(fs)
	name := fs.String("name", defaultCertificateName, "`NAME` of the certificate in KSeF (5-100 letters, digits, spaces, '_', '-')")
	typ := fs.String("type", string(ksef.CertificateAuthentication), "`TYPE` of certificate: Authentication (XAdES logins) or Offline (QR code II)")
	keyType := fs.String("key-type", "ecdsa", "`TYPE` of the new key: ecdsa (P-256, recommended) or rsa (2048 bits)")
	validFrom := fs.String("valid-from", "", "make the certificate valid from `TIME` (RFC 3339) instead of its issue")
	out := fs.String("out", "", "also write the certificate and key to `PREFIX`.crt and PREFIX.key")
	force := fs.Bool("force", false, "overwrite existing --out files")
	noStore := fs.Bool("no-store", false, "store nothing in Secrets Manager (needs --out)")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, enrollUsage(fs))
	if err != nil {
		return err
	}
	req := ksef.EnrollmentRequest{CertificateName: *name}
	switch strings.ToLower(*typ) {
	case "authentication":
		req.CertificateType = ksef.CertificateAuthentication
	case "offline":
		req.CertificateType = ksef.CertificateOffline
		*noStore = true
	default:
		return usagef("--type must be Authentication or Offline")
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case *noStore && *out == "" && req.CertificateType == ksef.CertificateOffline:
		return usagef("an Offline certificate cannot log in and is not stored: give --out")
	case *noStore && *out == "":
		return usagef("--no-store needs --out, or the new key would be lost")
	case *noStore && (sf.secretID != "" || sf.kmsKeyID != ""):
		return usagef("nothing is stored: drop --secret-id and --kms-key-id")
	case *keyType != "ecdsa" && *keyType != "rsa":
		return usagef("--key-type must be ecdsa or rsa")
	}
	if n := utf8.RuneCountInString(*name); n < 5 || n > 100 {
		return usagef("--name must have 5 to 100 characters")
	}
	if *validFrom != "" {
		t, err := time.Parse(time.RFC3339, *validFrom)
		if err != nil {
			return usagef("--valid-from: want RFC 3339 (2026-09-01T00:00:00Z): %v", err)
		}
		req.ValidFrom = &t
	}
	if err := l.check(fs); err != nil {
		return err
	}
	if *out != "" && !*force {
		for _, f := range []string{*out + ".crt", *out + ".key"} {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite it)", f)
			}
		}
	}
	var store *credStore
	if !*noStore {
		if store, err = x.openStore(ctx, &sf, l.nip, false); err != nil {
			return err
		}
	}
	return x.loggedIn(ctx, &l, true, func(ctx context.Context, s *session) error {
		cert, key, err := s.enroll(ctx, req, *keyType)
		if err != nil {
			return err
		}
		serial := hexSerial(cert)
		certPEM, keyPEM, err := ksef.EncodePEM(cert, key)
		if err != nil {
			return fmt.Errorf("encode certificate %s: %w", serial, err)
		}
		fmt.Fprintf(x.stdout, "KSeF certificate %s (%s, %q)\n", serial, req.CertificateType, req.CertificateName)
		printCertificate(x.stdout, "  ", cert, key)
		if *out != "" {
			if err := writeNew(*out+".key", keyPEM, 0o600, true); err != nil {
				return err
			}
			if err := writeNew(*out+".crt", certPEM, 0o644, true); err != nil {
				return err
			}
			fmt.Fprintf(x.stdout, "wrote %s.crt and %s.key\n", *out, *out)
		}
		if *noStore {
			return nil
		}
		var revoke func(context.Context) error // none with an --out copy of the key
		if *out == "" {
			revoke = func(ctx context.Context) error {
				return s.client.RevokeCertificate(ctx, serial, ksef.RevocationUnspecified)
			}
		}
		return store.saveNew(ctx, credentialUpdate{env: l.api.env, baseURL: l.api.baseURL, apply: func(c *secrets.Credentials) {
			c.AuthMethod = secrets.AuthXAdES
			c.CertificatePEM, c.PrivateKeyPEM = string(certPEM), ksef.Secret(keyPEM)
		}}, "certificate "+serial, revoke)
	})
}

// enroll obtains a KSeF certificate for a new key: limits, enrollment data, key, CSR,
// enrollment, status polled until the certificate is issued, download.
func (s *session) enroll(ctx context.Context, req ksef.EnrollmentRequest, keyType string) (*x509.Certificate, crypto.Signer, error) {
	x := s.x
	limits, err := s.client.CertificateLimits(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate limits: %w", err)
	}
	if !limits.CanRequest {
		return nil, nil, fmt.Errorf("KSeF takes no more enrollments from this subject: %d of %d enrollments left, %d of %d active certificates left (revoke one with ksef cert revoke)",
			limits.Enrollment.Remaining, limits.Enrollment.Limit, limits.Certificate.Remaining, limits.Certificate.Limit)
	}
	x.progressf("certificate limits: %d of %d enrollments and %d of %d active certificates left",
		limits.Enrollment.Remaining, limits.Enrollment.Limit, limits.Certificate.Remaining, limits.Certificate.Limit)
	data, err := s.client.EnrollmentData(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("enrollment data: %w", err)
	}
	x.progressf("enrollment data: %s", enrollmentDataText(data))
	var key crypto.Signer
	if keyType == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	req.CSR, err = ksef.NewCSR(data, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate signing request: %w", err)
	}
	op, err := s.client.Enroll(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	ref := op.ReferenceNumber
	x.progressf("KSeF accepted the enrollment (reference %s)", ref)
	var serial string
	err = s.poll(ctx, "certificate enrollment "+ref, func(ctx context.Context) (bool, string, error) {
		st, err := s.client.EnrollmentStatus(ctx, ref)
		if err != nil {
			return false, "", fmt.Errorf("status of enrollment %s: %w", ref, err)
		}
		serial = st.CertificateSerialNumber
		return operationDone("enrollment "+ref, st.Status)
	})
	if err != nil {
		return nil, nil, err
	}
	if serial == "" {
		return nil, nil, fmt.Errorf("enrollment %s succeeded without a certificate serial number", ref)
	}
	x.progressf("KSeF issued certificate %s", serial)
	got, err := s.client.RetrieveCertificates(ctx, []string{serial})
	if err != nil {
		return nil, nil, fmt.Errorf("download certificate %s: %w", serial, err)
	}
	i := slices.IndexFunc(got, func(c ksef.RetrievedCertificate) bool { return strings.EqualFold(c.SerialNumber, serial) })
	if i < 0 {
		return nil, nil, fmt.Errorf("download certificate %s: KSeF did not return it", serial)
	}
	cert, err := x509.ParseCertificate(got[i].Certificate)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", serial, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("certificate %s does not certify the key of the request", serial)
	}
	return cert, key, nil
}

// enrollmentDataText lists the attributes of enrollment data that are set.
func enrollmentDataText(d *ksef.EnrollmentData) string {
	var parts []string
	for _, a := range []struct{ name, value string }{
		{"CN", d.CommonName}, {"GN", d.GivenName}, {"SN", d.Surname}, {"O", d.OrganizationName},
		{"organizationIdentifier", d.OrganizationIdentifier}, {"serialNumber", d.SerialNumber},
		{"uniqueIdentifier", d.UniqueIdentifier}, {"C", d.CountryName},
	} {
		if a.value != "" {
			parts = append(parts, a.name+"="+a.value)
		}
	}
	return strings.Join(parts, ", ")
}

func certListUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef cert list [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--status S] [--type T] [--json]
                  [--timeout D] [--verbose]

List the KSeF certificates of the subject that logs in: serial number, name, type, status
(Active, Blocked, Revoked, Expired), validity, last use. With --json, one JSON object per
certificate.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// certRow is a KSeF certificate as ksef cert list prints it.
type certRow struct {
	SerialNumber string `json:"serialNumber"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Status       string `json:"status"`
	CommonName   string `json:"commonName"`
	Subject      string `json:"subject"`
	ValidFrom    string `json:"validFrom"`
	ValidTo      string `json:"validTo"`
	LastUsed     string `json:"lastUseDate,omitempty"`
}

// runCertList is ksef cert list.
func runCertList(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef cert list", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	status := fs.String("status", "", "only certificates in state `S`: Active, Blocked, Revoked or Expired")
	typ := fs.String("type", "", "only certificates of type `T`: Authentication or Offline")
	jsonOut := fs.Bool("json", false, "print one JSON object per certificate")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, certListUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	var q ksef.CertificateQuery
	if *status != "" {
		states := []ksef.CertificateStatus{ksef.CertificateActive, ksef.CertificateBlocked, ksef.CertificateRevoked, ksef.CertificateExpired}
		i := slices.IndexFunc(states, func(s ksef.CertificateStatus) bool { return strings.EqualFold(string(s), *status) })
		if i < 0 {
			return usagef("--status must be Active, Blocked, Revoked or Expired")
		}
		q.Status = states[i]
	}
	switch strings.ToLower(*typ) {
	case "":
	case "authentication":
		q.Type = ksef.CertificateAuthentication
	case "offline":
		q.Type = ksef.CertificateOffline
	default:
		return usagef("--type must be Authentication or Offline")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		var rows []certRow
		for page := 0; ; page++ {
			p, err := s.client.QueryCertificates(ctx, q, ksef.PageRequest{PageOffset: page, PageSize: 50})
			if err != nil {
				return fmt.Errorf("query certificates: %w", err)
			}
			for _, c := range p.Certificates {
				r := certRow{SerialNumber: c.SerialNumber, Name: c.Name, Type: string(c.Type), Status: string(c.Status),
					CommonName: c.CommonName, Subject: subjectText(&c.Subject), ValidFrom: dateText(c.ValidFrom), ValidTo: dateText(c.ValidTo)}
				if !c.LastUseDate.IsZero() {
					r.LastUsed = dateText(c.LastUseDate)
				}
				rows = append(rows, r)
			}
			if !p.HasMore {
				break
			}
		}
		if *jsonOut {
			return writeJSONLines(x.stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(x.stdout, "No certificates.")
			return nil
		}
		t := newTable(x.stdout, "SERIAL", "TYPE", "STATUS", "VALID FROM", "VALID TO", "LAST USED", "SUBJECT", "NAME")
		for _, r := range rows {
			last := r.LastUsed
			if last == "" {
				last = "-"
			}
			t.row(r.SerialNumber, r.Type, r.Status, r.ValidFrom, r.ValidTo, last, r.Subject, r.Name)
		}
		return t.flush()
	})
}

func certRevokeUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef cert revoke [--env test|demo|prod | --base-url URL] --nip NIP
                  (--cert FILE --key FILE | --p12 FILE) [--reason R] [--timeout D] [--verbose] SERIAL

Revoke one of the logged-in subject's KSeF certificates by its serial number (ksef cert list
shows them); it stops working at once. KSeF allows this only after a login with a signature.
A pipeline whose credentials secret holds the certificate can no longer log in with it.

Flags:
`)
		printFlags(w, fs)
	}
}

// runCertRevoke is ksef cert revoke.
func runCertRevoke(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef cert revoke", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	reason := fs.String("reason", string(ksef.RevocationUnspecified), "`R`: Unspecified, Superseded or KeyCompromise")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, certRevokeUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("give the serial number of one certificate (ksef cert list shows them)")
	}
	reasons := []ksef.RevocationReason{ksef.RevocationUnspecified, ksef.RevocationSuperseded, ksef.RevocationKeyCompromise}
	i := slices.IndexFunc(reasons, func(r ksef.RevocationReason) bool { return strings.EqualFold(string(r), *reason) })
	if i < 0 {
		return usagef("--reason must be Unspecified, Superseded or KeyCompromise")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	serial := strings.ToUpper(rest[0])
	return x.loggedIn(ctx, &l, true, func(ctx context.Context, s *session) error {
		if err := s.client.RevokeCertificate(ctx, serial, reasons[i]); err != nil {
			return fmt.Errorf("revoke certificate %s: %w", serial, err)
		}
		fmt.Fprintf(x.stdout, "Revoked KSeF certificate %s (%s)\n", serial, reasons[i])
		return nil
	})
}
