package emulator_test

// A small KSeF 2.0 client written from the official API description and integrator guide, for
// the tests only. It deliberately shares no code with the emulator or with pkg/ksef.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// testStart is the emulator time of most tests: after every sample invoice's issue date.
var testStart = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// sellerNIP is the seller of every official sample invoice.
const sellerNIP = "9999999999"

type kclient struct {
	t    testing.TB
	srv  *emutest.Server
	base string
	hc   *http.Client
	// headers are added to every request.
	headers map[string]string
}

func newClient(t testing.TB, srv *emutest.Server) *kclient {
	return &kclient{t: t, srv: srv, base: srv.URL, hc: srv.Client(), headers: map[string]string{}}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// exceptionCode returns the code of a 400 answer in either error format.
func (r reply) exceptionCode(t testing.TB) int {
	t.Helper()
	var body struct {
		Exception *struct {
			ExceptionDetailList []struct {
				ExceptionCode int `json:"exceptionCode"`
			} `json:"exceptionDetailList"`
		} `json:"exception"`
		Errors []struct {
			Code int `json:"code"`
		} `json:"errors"`
	}
	r.decode(t, &body)
	switch {
	case body.Exception != nil && len(body.Exception.ExceptionDetailList) > 0:
		return body.Exception.ExceptionDetailList[0].ExceptionCode
	case len(body.Errors) > 0:
		return body.Errors[0].Code
	}
	t.Fatalf("no exception code in %s", r.body)
	return 0
}

// exceptionDetails returns the details of a 400 answer in the default format.
func (r reply) exceptionDetails(t testing.TB) []string {
	t.Helper()
	var body struct {
		Exception struct {
			ExceptionDetailList []struct {
				Details []string `json:"details"`
			} `json:"exceptionDetailList"`
		} `json:"exception"`
	}
	r.decode(t, &body)
	if len(body.Exception.ExceptionDetailList) == 0 {
		t.Fatalf("no exception in %s", r.body)
	}
	return body.Exception.ExceptionDetailList[0].Details
}

// do sends a request; body is nil, []byte (sent as application/xml) or a value sent as JSON.
// extra holds header name/value pairs.
func (c *kclient) do(method, path, bearer string, body any, extra ...string) reply {
	c.t.Helper()
	return c.doURL(method, c.base+path, bearer, body, extra...)
}

func (c *kclient) doURL(method, url, bearer string, body any, extra ...string) reply {
	c.t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
		contentType = "application/xml"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("marshal request: %v", err)
		}
		rd = bytes.NewReader(j)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, url, rd)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read %s %s: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *kclient) expect(r reply, status int) {
	c.t.Helper()
	if r.status != status {
		c.t.Fatalf("got HTTP %d, want %d; body %s", r.status, status, r.body)
	}
}

type publicKey struct {
	Certificate   []byte    `json:"certificate"`
	CertificateID string    `json:"certificateId"`
	PublicKeyID   string    `json:"publicKeyId"`
	ValidFrom     time.Time `json:"validFrom"`
	ValidTo       time.Time `json:"validTo"`
	Usage         []string  `json:"usage"`
}

func (c *kclient) publicKeys() []publicKey {
	c.t.Helper()
	r := c.do("GET", "/security/public-key-certificates", "", nil)
	c.expect(r, 200)
	var keys []publicKey
	r.decode(c.t, &keys)
	return keys
}

// mfKey picks the certificate for a usage as the guide says: valid now, newest validFrom.
func (c *kclient) mfKey(usage string) (*rsa.PublicKey, string) {
	c.t.Helper()
	now := c.srv.Emulator.Now()
	var best *publicKey
	keys := c.publicKeys()
	for i, k := range keys {
		if slices.Contains(k.Usage, usage) && !now.Before(k.ValidFrom) && now.Before(k.ValidTo) &&
			(best == nil || k.ValidFrom.After(best.ValidFrom)) {
			best = &keys[i]
		}
	}
	if best == nil {
		c.t.Fatalf("no %s key", usage)
	}
	cert, err := x509.ParseCertificate(best.Certificate)
	if err != nil {
		c.t.Fatalf("parse MF certificate: %v", err)
	}
	return cert.PublicKey.(*rsa.PublicKey), best.PublicKeyID
}

type challengeReply struct {
	Challenge   string    `json:"challenge"`
	Timestamp   time.Time `json:"timestamp"`
	TimestampMs int64     `json:"timestampMs"`
	ClientIP    string    `json:"clientIp"`
}

func (c *kclient) challenge() challengeReply {
	c.t.Helper()
	r := c.do("POST", "/auth/challenge", "", nil)
	c.expect(r, 200)
	var ch challengeReply
	r.decode(c.t, &ch)
	return ch
}

func oaepSHA256(t testing.TB, pub *rsa.PublicKey, msg []byte) []byte {
	t.Helper()
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	return ct
}

type tokenInfo struct {
	Token      string    `json:"token"`
	ValidUntil time.Time `json:"validUntil"`
}

type authInit struct {
	ReferenceNumber     string    `json:"referenceNumber"`
	AuthenticationToken tokenInfo `json:"authenticationToken"`
}

type ksefTokenReq struct {
	Challenge         string         `json:"challenge"`
	ContextIdentifier map[string]any `json:"contextIdentifier"`
	EncryptedToken    []byte         `json:"encryptedToken"`
	PublicKeyID       string         `json:"publicKeyId,omitempty"`
	AuthPolicy        map[string]any `json:"authorizationPolicy,omitempty"`
}

// startTokenAuth posts a KSeF-token authentication, encrypted the documented way, and returns the
// raw reply.
func (c *kclient) startTokenAuth(nip, token string) reply {
	c.t.Helper()
	ch := c.challenge()
	pub, keyID := c.mfKey("KsefTokenEncryption")
	plain := token + "|" + strconv.FormatInt(ch.TimestampMs, 10)
	return c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
		Challenge:         ch.Challenge,
		ContextIdentifier: map[string]any{"type": "Nip", "value": nip},
		EncryptedToken:    oaepSHA256(c.t, pub, []byte(plain)),
		PublicKeyID:       keyID,
	})
}

type authStatus struct {
	StartDate            time.Time `json:"startDate"`
	AuthenticationMethod string    `json:"authenticationMethod"`
	Status               struct {
		Code        int      `json:"code"`
		Description string   `json:"description"`
		Details     []string `json:"details"`
	} `json:"status"`
	IsTokenRedeemed *bool `json:"isTokenRedeemed"`
}

func (c *kclient) authStatus(ai authInit) authStatus {
	c.t.Helper()
	r := c.do("GET", "/auth/"+ai.ReferenceNumber, ai.AuthenticationToken.Token, nil)
	c.expect(r, 200)
	var st authStatus
	r.decode(c.t, &st)
	return st
}

type tokens struct {
	AccessToken  tokenInfo `json:"accessToken"`
	RefreshToken tokenInfo `json:"refreshToken"`
}

// finishAuth waits (on the fake clock) for the authentication to end, expects 200 and redeems.
func (c *kclient) finishAuth(ai authInit) tokens {
	c.t.Helper()
	if st := c.authStatus(ai); st.Status.Code != 100 {
		c.t.Fatalf("fresh authentication: status %d, want 100", st.Status.Code)
	}
	c.srv.Clock.Advance(emulator.DefaultAuthDelay)
	if st := c.authStatus(ai); st.Status.Code != 200 {
		c.t.Fatalf("authentication: status %+v, want 200", st.Status)
	}
	r := c.do("POST", "/auth/token/redeem", ai.AuthenticationToken.Token, nil)
	c.expect(r, 200)
	var tk tokens
	r.decode(c.t, &tk)
	return tk
}

// loginToken authenticates with a KSeF token and returns the tokens.
func (c *kclient) loginToken(nip, token string) tokens {
	c.t.Helper()
	r := c.startTokenAuth(nip, token)
	c.expect(r, 202)
	var ai authInit
	r.decode(c.t, &ai)
	return c.finishAuth(ai)
}

// onlineSession is an open session and its AES key.
type onlineSession struct {
	ref     string
	key, iv []byte
}

func formCodeFA3() map[string]string {
	return map[string]string{"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
}

func (c *kclient) openSessionReply(access string, key, iv []byte) reply {
	c.t.Helper()
	pub, keyID := c.mfKey("SymmetricKeyEncryption")
	return c.do("POST", "/sessions/online", access, map[string]any{
		"formCode": formCodeFA3(),
		"encryption": map[string]any{
			"encryptedSymmetricKey": oaepSHA256(c.t, pub, key),
			"initializationVector":  iv,
			"publicKeyId":           keyID,
		},
	})
}

func (c *kclient) openSession(access string) onlineSession {
	c.t.Helper()
	s := onlineSession{key: make([]byte, 32), iv: make([]byte, 16)}
	_, _ = rand.Read(s.key)
	_, _ = rand.Read(s.iv)
	r := c.openSessionReply(access, s.key, s.iv)
	c.expect(r, 201)
	var out struct {
		ReferenceNumber string    `json:"referenceNumber"`
		ValidUntil      time.Time `json:"validUntil"`
	}
	r.decode(c.t, &out)
	s.ref = out.ReferenceNumber
	return s
}

func aesCBCEncrypt(t testing.TB, key, iv, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatalf("aes: %v", err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := append(slices.Clone(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(buf))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, buf)
	return out
}

func b64sha256(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// sendRequest builds the SendInvoiceRequest of an invoice for a session.
func sendRequest(t testing.TB, s onlineSession, invoice []byte) map[string]any {
	enc := aesCBCEncrypt(t, s.key, s.iv, invoice)
	return map[string]any{
		"invoiceHash":             b64sha256(invoice),
		"invoiceSize":             len(invoice),
		"encryptedInvoiceHash":    b64sha256(enc),
		"encryptedInvoiceSize":    len(enc),
		"encryptedInvoiceContent": enc,
		"offlineMode":             false,
	}
}

func (c *kclient) sendInvoice(access string, s onlineSession, invoice []byte) string {
	c.t.Helper()
	r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(c.t, s, invoice))
	c.expect(r, 202)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(c.t, &out)
	return out.ReferenceNumber
}

type invoiceStatus struct {
	OrdinalNumber                int        `json:"ordinalNumber"`
	InvoiceNumber                string     `json:"invoiceNumber"`
	KSeFNumber                   string     `json:"ksefNumber"`
	ReferenceNumber              string     `json:"referenceNumber"`
	InvoiceHash                  string     `json:"invoiceHash"`
	AcquisitionDate              *time.Time `json:"acquisitionDate"`
	InvoicingDate                time.Time  `json:"invoicingDate"`
	PermanentStorageDate         *time.Time `json:"permanentStorageDate"`
	UPODownloadURL               string     `json:"upoDownloadUrl"`
	UPODownloadURLExpirationDate *time.Time `json:"upoDownloadUrlExpirationDate"`
	InvoicingMode                string     `json:"invoicingMode"`
	Status                       struct {
		Code        int               `json:"code"`
		Description string            `json:"description"`
		Details     []string          `json:"details"`
		Extensions  map[string]string `json:"extensions"`
	} `json:"status"`
}

func (c *kclient) invoiceStatus(access string, s onlineSession, invRef string) invoiceStatus {
	c.t.Helper()
	r := c.do("GET", "/sessions/"+s.ref+"/invoices/"+invRef, access, nil)
	c.expect(r, 200)
	var st invoiceStatus
	r.decode(c.t, &st)
	return st
}

// settle advances the fake clock until every invoice sent so far is final.
func (c *kclient) settle() {
	c.srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
}

type sessionStatus struct {
	Status struct {
		Code        int      `json:"code"`
		Description string   `json:"description"`
		Details     []string `json:"details"`
	} `json:"status"`
	DateCreated time.Time `json:"dateCreated"`
	DateUpdated time.Time `json:"dateUpdated"`
	UPO         *struct {
		Pages []struct {
			ReferenceNumber           string    `json:"referenceNumber"`
			DownloadURL               string    `json:"downloadUrl"`
			DownloadURLExpirationDate time.Time `json:"downloadUrlExpirationDate"`
		} `json:"pages"`
	} `json:"upo"`
	InvoiceCount           int `json:"invoiceCount"`
	SuccessfulInvoiceCount int `json:"successfulInvoiceCount"`
	FailedInvoiceCount     int `json:"failedInvoiceCount"`
}

func (c *kclient) sessionStatus(access string, s onlineSession) sessionStatus {
	c.t.Helper()
	r := c.do("GET", "/sessions/"+s.ref, access, nil)
	c.expect(r, 200)
	var st sessionStatus
	r.decode(c.t, &st)
	return st
}

func (c *kclient) closeSession(access string, s onlineSession) {
	c.t.Helper()
	c.expect(c.do("POST", "/sessions/online/"+s.ref+"/close", access, nil), 204)
}

// invalid marks a request as deliberately breaking the API description.
func invalid() []string { return []string{emutest.InvalidRequestHeader, "1"} }

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
