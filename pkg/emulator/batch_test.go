package emulator_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// The batch tests build packages the documented way, independently of pkg/ksef: a ZIP or
// tar.gz archive with one file per invoice, cut into parts, each part encrypted on its own with
// the session key and IV.

type archiveFile struct {
	name string
	doc  []byte
}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	doc, ok := official.SampleInvoices()[name]
	if !ok {
		t.Fatalf("no official sample %s", name)
	}
	return doc
}

func zipArchive(t testing.TB, files ...archiveFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGzArchive(t testing.TB, files ...archiveFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.doc)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testPackage is an archive cut into parts of at most partSize bytes and encrypted.
type testPackage struct {
	key, iv     []byte
	archive     []byte
	plainParts  [][]byte
	parts       [][]byte // encrypted
	compression string
}

func newTestPackage(t testing.TB, archive []byte, partSize int, compression string) *testPackage {
	t.Helper()
	p := &testPackage{key: make([]byte, 32), iv: make([]byte, 16), archive: archive, compression: compression}
	_, _ = rand.Read(p.key)
	_, _ = rand.Read(p.iv)
	for rest := archive; len(rest) > 0; {
		n := min(partSize, len(rest))
		p.plainParts = append(p.plainParts, rest[:n])
		p.parts = append(p.parts, aesCBCEncrypt(t, p.key, p.iv, rest[:n]))
		rest = rest[n:]
	}
	return p
}

// request is the OpenBatchSessionRequest of the package.
func (p *testPackage) request(t testing.TB, c *kclient) map[string]any {
	t.Helper()
	pub, keyID := c.mfKey("SymmetricKeyEncryption")
	var parts []any
	for i, part := range p.parts {
		parts = append(parts, map[string]any{"ordinalNumber": i + 1, "fileSize": len(part), "fileHash": b64sha256(part)})
	}
	file := map[string]any{"fileSize": len(p.archive), "fileHash": b64sha256(p.archive), "fileParts": parts}
	if p.compression != "" {
		file["compressionType"] = p.compression
	}
	return map[string]any{
		"formCode":  formCodeFA3(),
		"batchFile": file,
		"encryption": map[string]any{
			"encryptedSymmetricKey": oaepSHA256(t, pub, p.key),
			"initializationVector":  p.iv,
			"publicKeyId":           keyID,
		},
		"offlineMode": false,
	}
}

type partUpload struct {
	OrdinalNumber int               `json:"ordinalNumber"`
	Method        string            `json:"method"`
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers"`
}

type batchOpened struct {
	ReferenceNumber    string       `json:"referenceNumber"`
	PartUploadRequests []partUpload `json:"partUploadRequests"`
}

func (b batchOpened) session() onlineSession { return onlineSession{ref: b.ReferenceNumber} }

func (c *kclient) openBatch(access string, body map[string]any) batchOpened {
	c.t.Helper()
	r := c.do("POST", "/sessions/batch", access, body)
	c.expect(r, 201)
	var b batchOpened
	r.decode(c.t, &b)
	return b
}

// upload sends a part as the upload request says, with a bearer token the blob store must
// ignore.
func (c *kclient) upload(u partUpload, body []byte) reply {
	c.t.Helper()
	extra := []string{"Authorization", "Bearer not-for-the-blob-store"}
	for k, v := range u.Headers {
		extra = append(extra, k, v)
	}
	return c.doURL(u.Method, u.URL, "", body, extra...)
}

func (c *kclient) uploadAll(b batchOpened, p *testPackage) {
	c.t.Helper()
	for _, u := range b.PartUploadRequests {
		c.expect(c.upload(u, p.parts[u.OrdinalNumber-1]), 201)
	}
}

// sendBatch opens a session for the package, uploads every part and closes it.
func (c *kclient) sendBatch(access string, p *testPackage) batchOpened {
	c.t.Helper()
	b := c.openBatch(access, p.request(c.t, c))
	c.uploadAll(b, p)
	c.expect(c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil), 204)
	return b
}

type invoiceListItem struct {
	invoiceStatus
	InvoiceFileName string `json:"invoiceFileName"`
}

func (c *kclient) batchInvoices(access, ref, which string) []invoiceListItem {
	c.t.Helper()
	r := c.do("GET", "/sessions/"+ref+"/invoices"+which+"?pageSize=100", access, nil)
	c.expect(r, 200)
	var out struct {
		Invoices []invoiceListItem `json:"invoices"`
	}
	r.decode(c.t, &out)
	return out.Invoices
}

// batchServer logs in as the seller of the samples, with tokens that outlive the upload window.
func batchServer(t *testing.T, cfg emulator.Config) (*emutest.Server, *kclient, string) {
	t.Helper()
	cfg.AccessTokenTTL = 48 * time.Hour
	srv, c := tokenServer(t, cfg)
	return srv, c, c.loginToken(sellerNIP, token1).AccessToken.Token
}

// TestBatchSession sends three official samples and one invalid invoice in a ZIP of two parts:
// open, upload, close, 150, then 200 with three KSeF numbers, one failure with its reason, file
// names, UPOs and downloads.
func TestBatchSession(t *testing.T) {
	srv, c, access := batchServer(t, emulator.Config{})
	bad := replace(sample1("BAD/1"), "<P_2>BAD/1</P_2>", "")
	files := []archiveFile{
		{"FA_3_Przyklad_1.xml", sample(t, "FA_3_Przyklad_1.xml")},
		{"zła faktura.xml", bad},
		{"FA_3_Przyklad_2.xml", sample(t, "FA_3_Przyklad_2.xml")},
		{"FA_3_Przyklad_10.xml", sample(t, "FA_3_Przyklad_10.xml")},
	}
	archive := zipArchive(t, files...)
	p := newTestPackage(t, archive, len(archive)/2+1, "")
	if len(p.parts) != 2 {
		t.Fatalf("%d parts, want 2", len(p.parts))
	}
	opened := srv.Clock.Now()
	b := c.openBatch(access, p.request(t, c))
	if !strings.Contains(b.ReferenceNumber, "-SB-") || len(b.PartUploadRequests) != 2 {
		t.Fatalf("open: %+v, want an SB reference and 2 upload requests", b)
	}
	for i, u := range b.PartUploadRequests {
		link, err := url.Parse(u.URL)
		if err != nil || u.OrdinalNumber != i+1 || u.Method != "PUT" || u.Headers["x-ms-blob-type"] != "BlockBlob" ||
			!strings.HasPrefix(link.Path, "/upload/") || link.Query().Get("sig") == "" {
			t.Errorf("upload request %+v is not a pre-signed PUT with x-ms-blob-type", u)
		}
	}
	st := c.sessionStatus(access, b.session())
	if st.Status.Code != 100 || st.Status.Description != "Sesja wsadowa rozpoczęta" {
		t.Errorf("open session: %+v, want 100", st.Status)
	}
	for _, typ := range []string{"Batch", "Online"} {
		r := c.do("GET", "/sessions?sessionType="+typ, access, nil)
		c.expect(r, 200)
		if listed := strings.Contains(string(r.body), b.ReferenceNumber); listed != (typ == "Batch") {
			t.Errorf("sessionType=%s lists the batch session: %v", typ, listed)
		}
	}

	for _, u := range b.PartUploadRequests {
		r := c.upload(u, p.parts[u.OrdinalNumber-1])
		c.expect(r, 201)
		sum := md5.Sum(p.parts[u.OrdinalNumber-1])
		if r.header.Get("Content-MD5") != base64.StdEncoding.EncodeToString(sum[:]) || r.header.Get("ETag") == "" {
			t.Errorf("upload answer headers %v, want Content-MD5 of the part and an ETag", r.header)
		}
	}
	c.expect(c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil), 204)
	if st := c.sessionStatus(access, b.session()); st.Status.Code != 150 || st.UPO != nil {
		t.Errorf("just closed: %+v, want 150 without UPO", st.Status)
	}
	for _, inv := range c.batchInvoices(access, b.ReferenceNumber, "") {
		if inv.Status.Code != 100 {
			t.Errorf("invoice %d right after close: status %d, want 100", inv.OrdinalNumber, inv.Status.Code)
		}
	}
	srv.Clock.Advance(emulator.DefaultAcceptDelay)
	if st := c.sessionStatus(access, b.session()); st.Status.Code != 150 {
		t.Errorf("processing: %+v, want 150", st.Status)
	}
	srv.Clock.Advance(emulator.DefaultProcessingDelay)
	st = c.sessionStatus(access, b.session())
	if st.Status.Code != 200 || st.Status.Description != "Sesja wsadowa przetworzona pomyślnie" ||
		st.InvoiceCount != 4 || st.SuccessfulInvoiceCount != 3 || st.FailedInvoiceCount != 1 || st.UPO == nil || len(st.UPO.Pages) != 1 {
		t.Fatalf("processed: %+v, want 200, 4/3/1 invoices and one UPO page", st)
	}

	invoices := c.batchInvoices(access, b.ReferenceNumber, "")
	if len(invoices) != 4 {
		t.Fatalf("%d invoices, want 4", len(invoices))
	}
	var ksefNumbers []string
	for i, inv := range invoices {
		f := files[i]
		if inv.OrdinalNumber != i+1 || inv.InvoiceFileName != f.name || inv.InvoiceHash != b64sha256(f.doc) {
			t.Errorf("invoice %d: ordinal %d, file %q, hash %s; want %d, %q, the file's hash", i+1, inv.OrdinalNumber, inv.InvoiceFileName, inv.InvoiceHash, i+1, f.name)
		}
		if !inv.InvoicingDate.Equal(opened) {
			t.Errorf("invoice %d: invoicingDate %v, want the opening of the session %v", i+1, inv.InvoicingDate, opened)
		}
		if f.name == "zła faktura.xml" {
			if inv.Status.Code != 450 || inv.KSeFNumber != "" || !contains(inv.Status.Details, "P_2") {
				t.Errorf("bad invoice: %+v, want 450 naming P_2", inv.Status)
			}
			continue
		}
		if inv.Status.Code != 200 || inv.UPODownloadURL == "" || inv.InvoicingMode != "Offline" {
			t.Errorf("invoice %s: %+v mode %q, want 200 with a UPO link, offline (issued before the session)", f.name, inv.Status, inv.InvoicingMode)
		}
		checkKSeFNumber(t, inv.KSeFNumber, sellerNIP, srv.Clock.Now())
		ksefNumbers = append(ksefNumbers, inv.KSeFNumber)
		upo := c.doURL("GET", inv.UPODownloadURL, "", nil)
		c.expect(upo, 200)
		validateUPO(t, upo.body)
		if u := parseUPO(t, upo.body); len(u.Documents) != 1 || u.Documents[0].KSeFNumber != inv.KSeFNumber || u.SessionRef != b.ReferenceNumber {
			t.Errorf("invoice UPO %+v does not describe %s", u, f.name)
		}
	}
	failed := c.batchInvoices(access, b.ReferenceNumber, "/failed")
	if len(failed) != 1 || failed[0].InvoiceFileName != "zła faktura.xml" {
		t.Errorf("failed invoices %+v, want the bad one", failed)
	}
	// One invoice by its reference number.
	single := c.invoiceStatus(access, b.session(), invoices[2].ReferenceNumber)
	if single.KSeFNumber != invoices[2].KSeFNumber {
		t.Errorf("invoice status %+v differs from the list", single)
	}

	page := st.UPO.Pages[0]
	sessionUPO := c.doURL("GET", page.DownloadURL, "", nil)
	c.expect(sessionUPO, 200)
	validateUPO(t, sessionUPO.body)
	u := parseUPO(t, sessionUPO.body)
	if u.Total != 3 || len(u.Documents) != 3 || u.SessionRef != b.ReferenceNumber {
		t.Fatalf("session UPO %+v, want the 3 accepted invoices", u)
	}
	for i, d := range u.Documents {
		if d.KSeFNumber != ksefNumbers[i] {
			t.Errorf("session UPO document %d: %s, want %s", i+1, d.KSeFNumber, ksefNumbers[i])
		}
	}

	srv.Clock.Advance(emulator.DefaultStorageDelay)
	r := c.do("GET", "/invoices/ksef/"+ksefNumbers[0], access, nil)
	c.expect(r, 200)
	if !bytes.Equal(r.body, files[0].doc) {
		t.Error("downloaded invoice differs from the file in the archive")
	}
}

// TestBatchSessionFormats: tar.gz, many small parts, a part uploaded twice (the last upload
// counts), attachments (allowed in batch sessions only), duplicates inside one package and the
// offline declaration.
func TestBatchSessionFormats(t *testing.T) {
	today := testStart.Format("2006-01-02")
	withAttachment := replace(sample1("ATT/1"), "</Faktura>",
		"<Zalacznik><BlokDanych><MetaDane><ZKlucz>k</ZKlucz><ZWartosc>v</ZWartosc></MetaDane></BlokDanych></Zalacznik></Faktura>")
	issuedToday := replace(sample1("TODAY/1"), "<P_1>2026-02-15</P_1>", "<P_1>"+today+"</P_1>")
	tests := []struct {
		name        string
		compression string
		partSize    int
		offline     bool
		files       []archiveFile
		want        []int
		wantMode    []string
	}{
		{"tar.gz", "TarGz", 1 << 20, false,
			[]archiveFile{{"a.xml", sample1("T/1")}, {"b.xml", sample1("T/2")}}, []int{200, 200}, []string{"Offline", "Offline"}},
		{"zip in parts of 700 bytes", "Zip", 700, false,
			[]archiveFile{{"a.xml", sample1("P/1")}, {"b.xml", sample1("P/2")}, {"c.xml", sample1("P/3")}}, []int{200, 200, 200}, nil},
		{"attachment", "", 1 << 20, false, []archiveFile{{"att.xml", withAttachment}}, []int{200}, nil},
		{"duplicate in the package", "Zip", 1 << 20, false,
			[]archiveFile{{"first.xml", sample1("D/1")}, {"second.xml", sample1("D/1")}}, []int{200, 440}, nil},
		{"issued on the day the session opened", "Zip", 1 << 20, false, []archiveFile{{"t.xml", issuedToday}}, []int{200}, []string{"Online"}},
		{"declared offline", "Zip", 1 << 20, true, []archiveFile{{"t.xml", issuedToday}}, []int{200}, []string{"Offline"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, access := batchServer(t, emulator.Config{})
			archive := zipArchive(t, tt.files...)
			if tt.compression == "TarGz" {
				archive = tarGzArchive(t, tt.files...)
			}
			p := newTestPackage(t, archive, tt.partSize, tt.compression)
			body := p.request(t, c)
			body["offlineMode"] = tt.offline
			b := c.openBatch(access, body)
			// A first, wrong upload of part 1 is replaced by the right one.
			c.expect(c.upload(b.PartUploadRequests[0], bytes.Repeat([]byte{1}, len(p.parts[0]))), 201)
			c.uploadAll(b, p)
			c.expect(c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil), 204)
			srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
			st := c.sessionStatus(access, b.session())
			if st.Status.Code != 200 {
				t.Fatalf("session %+v, want 200", st.Status)
			}
			invoices := c.batchInvoices(access, b.ReferenceNumber, "")
			if len(invoices) != len(tt.want) {
				t.Fatalf("%d invoices, want %d", len(invoices), len(tt.want))
			}
			for i, inv := range invoices {
				if inv.Status.Code != tt.want[i] || inv.InvoiceFileName != tt.files[i].name {
					t.Errorf("invoice %d (%s): %+v, want %d", i+1, inv.InvoiceFileName, inv.Status, tt.want[i])
				}
				if tt.wantMode != nil && inv.InvoicingMode != tt.wantMode[i] {
					t.Errorf("invoice %d: invoicingMode %q, want %q", i+1, inv.InvoicingMode, tt.wantMode[i])
				}
			}
			if tt.want[len(tt.want)-1] == 440 && invoices[1].Status.Extensions["originalKsefNumber"] != invoices[0].KSeFNumber {
				t.Errorf("duplicate: %+v, want it to name the first", invoices[1].Status)
			}
		})
	}
}

// TestBatchSessionFileChecks: per-file failures that do not stop the others.
func TestBatchSessionFileChecks(t *testing.T) {
	srv, c, access := batchServer(t, emulator.Config{})
	huge := replace(sample1("BIG/1"), "</Faktura>", "<!--"+strings.Repeat("x", 3_000_000)+"--></Faktura>")
	long := strings.Repeat("n", 130) + ".xml"
	files := []archiveFile{
		{"ok.xml", sample1("FC/1")},
		{long, sample1("FC/2")},
		{"huge.xml", huge},
		{"other seller.xml", replace(sample1("FC/3"), "<NIP>9999999999</NIP>", "<NIP>1234563218</NIP>")},
		{"readme.txt", []byte("not an invoice")},
	}
	p := newTestPackage(t, zipArchive(t, files...), 1<<20, "Zip")
	b := c.sendBatch(access, p)
	srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
	invoices := c.batchInvoices(access, b.ReferenceNumber, "")
	want := []struct {
		code   int
		name   string
		detail string
	}{
		{200, "ok.xml", ""},
		{430, long[:128], "128"},
		{430, "huge.xml", "3000000"},
		{410, "other seller.xml", "1234563218"},
		{450, "readme.txt", ""},
	}
	if len(invoices) != len(want) {
		t.Fatalf("%d invoices, want %d", len(invoices), len(want))
	}
	for i, w := range want {
		inv := invoices[i]
		if inv.Status.Code != w.code || inv.InvoiceFileName != w.name || (w.detail != "" && !contains(inv.Status.Details, w.detail)) {
			t.Errorf("file %d: %q %+v, want %d %q with %q", i+1, inv.InvoiceFileName, inv.Status, w.code, w.name, w.detail)
		}
		if inv.InvoiceHash != b64sha256(files[i].doc) {
			t.Errorf("file %d: invoiceHash %s, want the hash of the whole file", i+1, inv.InvoiceHash)
		}
	}
}

// TestBatchSessionPackageFailures: what goes wrong with the package as a whole ends the session
// with its documented code after processing, and no invoices.
func TestBatchSessionPackageFailures(t *testing.T) {
	invoices := []archiveFile{{"a.xml", sample1("PF/1")}, {"b.xml", sample1("PF/2")}, {"c.xml", sample1("PF/3")}}
	tests := []struct {
		name     string
		cfg      emulator.Config
		pkg      func(t *testing.T) *testPackage
		edit     func(p *testPackage, body map[string]any)
		wantCode int
		detail   string
	}{
		{"part hash differs", emulator.Config{}, zipPackage(invoices...), func(p *testPackage, body map[string]any) {
			part(body, 1)["fileHash"] = b64sha256([]byte("something else"))
		}, 405, "Skrót części '1'"},
		{"archive hash differs", emulator.Config{}, zipPackage(invoices...), func(p *testPackage, body map[string]any) {
			body["batchFile"].(map[string]any)["fileHash"] = b64sha256([]byte("another archive"))
		}, 405, "Skrót paczki"},
		{"archive size differs", emulator.Config{}, zipPackage(invoices...), func(p *testPackage, body map[string]any) {
			// Still within what the parts can hold, so that opening accepts it.
			body["batchFile"].(map[string]any)["fileSize"] = len(p.archive) - 1
		}, 405, "Rozmiar paczki"},
		{"part not decryptable", emulator.Config{}, func(t *testing.T) *testPackage {
			p := zipPackage(invoices...)(t)
			// Encrypted without PKCS#7 padding: the last block decrypts to a zero byte.
			raw := append(bytes.Clone(p.plainParts[1]), make([]byte, 16-len(p.plainParts[1])%16)...)
			block, _ := aes.NewCipher(p.key)
			cipher.NewCBCEncrypter(block, p.iv).CryptBlocks(raw, raw)
			p.parts[1] = raw
			return p
		}, nil, 435, "części '2'"},
		{"not a ZIP", emulator.Config{}, func(t *testing.T) *testPackage {
			return newTestPackage(t, []byte(strings.Repeat("not a zip archive ", 50)), 1<<20, "Zip")
		}, nil, 430, "ZIP"},
		{"ZIP declared as tar.gz", emulator.Config{}, func(t *testing.T) *testPackage {
			return newTestPackage(t, zipArchive(t, invoices...), 1<<20, "TarGz")
		}, nil, 430, "tar.gz"},
		{"corrupt ZIP entry", emulator.Config{}, func(t *testing.T) *testPackage {
			archive := zipArchive(t, invoices...)
			// Flip a byte of the first file's compressed data: decompression or its CRC fails.
			archive[40] ^= 0xFF
			return newTestPackage(t, archive, 1<<20, "Zip")
		}, nil, 430, "a.xml"},
		{"too many invoices (ZIP)", emulator.Config{MaxInvoicesPerSession: 2}, zipPackage(invoices...), nil, 420, "2"},
		{"too many invoices (tar.gz)", emulator.Config{MaxInvoicesPerSession: 2}, func(t *testing.T) *testPackage {
			return newTestPackage(t, tarGzArchive(t, invoices...), 1<<20, "TarGz")
		}, nil, 420, "2"},
		{"empty archive", emulator.Config{}, zipPackage(), nil, 440, "Nie przesłano faktur"},
		{"no valid invoice", emulator.Config{}, zipPackage(archiveFile{"x.xml", []byte("<x/>")}), nil, 445, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, access := batchServer(t, tt.cfg)
			p := tt.pkg(t)
			body := p.request(t, c)
			if tt.edit != nil {
				tt.edit(p, body)
			}
			b := c.openBatch(access, body)
			c.uploadAll(b, p)
			c.expect(c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil), 204)
			if st := c.sessionStatus(access, b.session()); st.Status.Code != 150 {
				t.Errorf("just closed: %+v, want 150", st.Status)
			}
			srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
			st := c.sessionStatus(access, b.session())
			if st.Status.Code != tt.wantCode || (tt.detail != "" && !contains(st.Status.Details, tt.detail)) || st.UPO != nil {
				t.Fatalf("session %+v, want %d with %q and no UPO", st.Status, tt.wantCode, tt.detail)
			}
			if tt.wantCode != 445 && st.InvoiceCount != 0 {
				t.Errorf("%d invoices, want none", st.InvoiceCount)
			}
			r := c.do("GET", "/sessions?sessionType=Batch&statuses=Failed&statuses=Cancelled", access, nil)
			if c.expect(r, 200); !strings.Contains(string(r.body), b.ReferenceNumber) {
				t.Errorf("the session is not listed as failed or cancelled: %s", r.body)
			}
		})
	}
}

func zipPackage(files ...archiveFile) func(t *testing.T) *testPackage {
	return func(t *testing.T) *testPackage {
		archive := zipArchive(t, files...)
		return newTestPackage(t, archive, len(archive)/2+1, "Zip")
	}
}

// part returns fileParts[n-1] of an OpenBatchSessionRequest body.
func part(body map[string]any, n int) map[string]any {
	return body["batchFile"].(map[string]any)["fileParts"].([]any)[n-1].(map[string]any)
}

func TestOpenBatchSessionBadRequest(t *testing.T) {
	_, c, access := batchServer(t, emulator.Config{})
	p := newTestPackage(t, zipArchive(t, archiveFile{"a.xml", sample1("OB/1")}, archiveFile{"b.xml", sample1("OB/2")}), 1000, "Zip")
	tests := []struct {
		name    string
		edit    func(body map[string]any)
		invalid bool // breaks the API description
		code    int
		detail  string
	}{
		{"no batchFile", func(b map[string]any) { delete(b, "batchFile") }, true, 21405, "batchFile"},
		{"FA (2)", func(b map[string]any) { b["formCode"].(map[string]string)["systemCode"] = "FA (2)" }, false, 21405, "kod formularza"},
		{"unknown compression", func(b map[string]any) { b["batchFile"].(map[string]any)["compressionType"] = "Rar" }, true, 21405, "compressionType"},
		{"51 parts", func(b map[string]any) {
			var parts []any
			for i := range 51 {
				parts = append(parts, map[string]any{"ordinalNumber": i + 1, "fileSize": 16, "fileHash": b64sha256(nil)})
			}
			b["batchFile"].(map[string]any)["fileParts"] = parts
		}, true, 21161, "51"},
		{"part over 100 MB", func(b map[string]any) { part(b, 1)["fileSize"] = 100_000_032 }, false, 21157, "100000000"},
		{"part size not a ciphertext size", func(b map[string]any) { part(b, 1)["fileSize"] = 1001 }, false, 21157, "1001"},
		{"sizes do not add up", func(b map[string]any) { b["batchFile"].(map[string]any)["fileSize"] = len(p.archive) + 100 }, false, 21157, "Rozmiar paczki"},
		{"ordinal numbers repeat", func(b map[string]any) { part(b, 2)["ordinalNumber"] = 1 }, false, 21405, "Numery porządkowe"},
		{"unknown public key", func(b map[string]any) {
			b["encryption"].(map[string]any)["publicKeyId"] = b64sha256([]byte("retired key"))
		}, false, 21470, "nie jest wspierany"},
		{"short IV", func(b map[string]any) { b["encryption"].(map[string]any)["initializationVector"] = []byte{1, 2, 3} }, false, 21405, "16 bajtów"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := p.request(t, c)
			tt.edit(body)
			var extra []string
			if tt.invalid {
				extra = invalid()
			}
			r := c.do("POST", "/sessions/batch", access, body, extra...)
			if c.expect(r, 400); r.exceptionCode(t) != tt.code || !contains(r.exceptionDetails(t), tt.detail) {
				t.Errorf("got %s, want %d with %q", r.body, tt.code, tt.detail)
			}
		})
	}
}

// TestBatchSessionKeyNotDecryptable: the session opens but its status is 415, and it cannot be
// closed.
func TestBatchSessionKeyNotDecryptable(t *testing.T) {
	_, c, access := batchServer(t, emulator.Config{})
	p := newTestPackage(t, zipArchive(t, archiveFile{"a.xml", sample1("K/1")}), 1<<20, "Zip")
	body := p.request(t, c)
	body["encryption"].(map[string]any)["encryptedSymmetricKey"] = bytes.Repeat([]byte{7}, 256)
	b := c.openBatch(access, body)
	if st := c.sessionStatus(access, b.session()); st.Status.Code != 415 {
		t.Fatalf("status %+v, want 415", st.Status)
	}
	c.uploadAll(b, p)
	r := c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil)
	if c.expect(r, 400); r.exceptionCode(t) != 21180 || !contains(r.exceptionDetails(t), "415") {
		t.Errorf("close: %s, want 21180 naming status 415", r.body)
	}
}

// TestBatchUpload: the pre-signed upload link as a blob store answers it.
func TestBatchUpload(t *testing.T) {
	p := newTestPackage(t, zipArchive(t, archiveFile{"a.xml", sample1("UP/1")}), 1<<20, "Zip")
	setup := func(t *testing.T) (*emutest.Server, *kclient, string, batchOpened) {
		srv, c, access := batchServer(t, emulator.Config{})
		return srv, c, access, c.openBatch(access, p.request(t, c))
	}
	blobCode := func(r reply) string {
		_, rest, _ := strings.Cut(string(r.body), "<Code>")
		code, _, _ := strings.Cut(rest, "</Code>")
		return code
	}
	tests := []struct {
		name   string
		send   func(t *testing.T, srv *emutest.Server, c *kclient, access string, b batchOpened) reply
		status int
		code   string
	}{
		{"POST instead of PUT", func(t *testing.T, _ *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			u := b.PartUploadRequests[0]
			u.Method = "POST"
			return c.upload(u, p.parts[0])
		}, 400, "UnsupportedHttpVerb"},
		{"no x-ms-blob-type", func(t *testing.T, _ *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			return c.doURL("PUT", b.PartUploadRequests[0].URL, "", p.parts[0])
		}, 400, "MissingRequiredHeader"},
		{"x-ms-blob-type AppendBlob", func(t *testing.T, _ *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			return c.doURL("PUT", b.PartUploadRequests[0].URL, "", p.parts[0], "x-ms-blob-type", "AppendBlob")
		}, 400, "InvalidHeaderValue"},
		{"tampered signature", func(t *testing.T, _ *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			u := b.PartUploadRequests[0]
			u.URL = strings.Replace(u.URL, "sig=", "sig=x", 1)
			return c.upload(u, p.parts[0])
		}, 403, "AuthenticationFailed"},
		{"another part's link", func(t *testing.T, _ *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			u := b.PartUploadRequests[0]
			u.URL = strings.Replace(u.URL, "/1?", "/2?", 1)
			return c.upload(u, p.parts[0])
		}, 403, "AuthenticationFailed"},
		{"upload window over", func(t *testing.T, srv *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			srv.Clock.Advance(emulator.BatchPartUploadWindow) // one part: 20 minutes
			return c.upload(b.PartUploadRequests[0], p.parts[0])
		}, 403, "AuthenticationFailed"},
		{"session closed", func(t *testing.T, _ *emutest.Server, c *kclient, access string, b batchOpened) reply {
			c.uploadAll(b, p)
			c.expect(c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil), 204)
			return c.upload(b.PartUploadRequests[0], p.parts[0])
		}, 403, "AuthorizationPermissionMismatch"},
		{"in time, with a bearer token to ignore", func(t *testing.T, srv *emutest.Server, c *kclient, _ string, b batchOpened) reply {
			srv.Clock.Advance(emulator.BatchPartUploadWindow - time.Second)
			return c.upload(b.PartUploadRequests[0], p.parts[0])
		}, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, access, b := setup(t)
			r := tt.send(t, srv, c, access, b)
			if r.status != tt.status || blobCode(r) != tt.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
		})
	}
}

func TestCloseBatchSessionErrors(t *testing.T) {
	archive := zipArchive(t, archiveFile{"a.xml", sample1("CL/1")}, archiveFile{"b.xml", sample1("CL/2")})
	p := newTestPackage(t, archive, len(archive)/2+1, "Zip")
	tests := []struct {
		name   string
		before func(t *testing.T, srv *emutest.Server, c *kclient, b batchOpened)
		code   int
		detail string
		status int // session status afterwards
	}{
		{"part 2 not uploaded", func(t *testing.T, _ *emutest.Server, c *kclient, b batchOpened) {
			c.expect(c.upload(b.PartUploadRequests[0], p.parts[0]), 201)
		}, 21205, "'2'", 100},
		{"part 1 shorter than declared", func(t *testing.T, _ *emutest.Server, c *kclient, b batchOpened) {
			c.uploadAll(b, p)
			c.expect(c.upload(b.PartUploadRequests[0], p.parts[0][:16]), 201)
		}, 21157, "'1'", 100},
		{"upload window over", func(t *testing.T, srv *emutest.Server, c *kclient, b batchOpened) {
			c.uploadAll(b, p)
			srv.Clock.Advance(2 * emulator.BatchPartUploadWindow) // two parts: 40 minutes
		}, 21208, "przekroczony czas", 440},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, access := batchServer(t, emulator.Config{})
			b := c.openBatch(access, p.request(t, c))
			tt.before(t, srv, c, b)
			r := c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil)
			if c.expect(r, 400); r.exceptionCode(t) != tt.code || !contains(r.exceptionDetails(t), tt.detail) {
				t.Errorf("close: %s, want %d with %q", r.body, tt.code, tt.detail)
			}
			if st := c.sessionStatus(access, b.session()); st.Status.Code != tt.status {
				t.Errorf("session %+v, want %d", st.Status, tt.status)
			}
		})
	}

	t.Run("closed twice", func(t *testing.T) {
		_, c, access := batchServer(t, emulator.Config{})
		b := c.sendBatch(access, p)
		r := c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil)
		if c.expect(r, 400); r.exceptionCode(t) != 21180 || !contains(r.exceptionDetails(t), "150") {
			t.Errorf("second close: %s, want 21180 naming 150", r.body)
		}
	})
	t.Run("never closed", func(t *testing.T) {
		srv, c, access := batchServer(t, emulator.Config{})
		b := c.openBatch(access, p.request(t, c))
		srv.Clock.Advance(2 * emulator.BatchPartUploadWindow)
		st := c.sessionStatus(access, b.session())
		if st.Status.Code != 440 || !contains(st.Status.Details, "Przekroczono czas wysyłki") {
			t.Errorf("session %+v, want 440 upload time exceeded", st.Status)
		}
	})
	t.Run("online and batch endpoints do not mix", func(t *testing.T) {
		_, c, access := batchServer(t, emulator.Config{})
		b := c.openBatch(access, p.request(t, c))
		online := c.openSession(access)
		for _, call := range []struct{ path, ref string }{
			{"/sessions/batch/%s/close", online.ref},
			{"/sessions/online/%s/close", b.ReferenceNumber},
			{"/sessions/batch/%s/close", "20250626-SB-213D593000-4DE10D80A5-E9"},
		} {
			r := c.do("POST", fmt.Sprintf(call.path, call.ref), access, nil)
			if c.expect(r, 400); r.exceptionCode(t) != 21173 {
				t.Errorf("%s: code %d, want 21173", fmt.Sprintf(call.path, call.ref), r.exceptionCode(t))
			}
		}
		r := c.do("POST", "/sessions/online/"+b.ReferenceNumber+"/invoices", access, sendRequest(t, onlineSession{ref: b.ReferenceNumber, key: p.key, iv: p.iv}, sample1("MIX/1")))
		if c.expect(r, 400); r.exceptionCode(t) != 21173 {
			t.Errorf("online send to a batch session: code %d, want 21173", r.exceptionCode(t))
		}
	})
	t.Run("another context", func(t *testing.T) {
		_, c, access := batchServer(t, emulator.Config{})
		b := c.openBatch(access, p.request(t, c))
		other := c.loginToken(otherNIP, "other-token").AccessToken.Token
		r := c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", other, nil)
		if c.expect(r, 400); r.exceptionCode(t) != 21173 {
			t.Errorf("close from another context: code %d, want 21173", r.exceptionCode(t))
		}
	})
}

// TestBatchSessionExpiredByAdmin: ExpireSessions ends the upload window of an open batch
// session.
func TestBatchSessionExpiredByAdmin(t *testing.T) {
	srv, c, access := batchServer(t, emulator.Config{})
	p := newTestPackage(t, zipArchive(t, archiveFile{"a.xml", sample1("EX/1")}), 1<<20, "Zip")
	b := c.openBatch(access, p.request(t, c))
	if n := srv.Emulator.ExpireSessions(sellerNIP); n != 1 {
		t.Fatalf("expired %d sessions, want 1", n)
	}
	if r := c.upload(b.PartUploadRequests[0], p.parts[0]); r.status != 403 {
		t.Errorf("upload after the window ended: %d %s, want 403", r.status, r.body)
	}
	r := c.do("POST", "/sessions/batch/"+b.ReferenceNumber+"/close", access, nil)
	if c.expect(r, 400); r.exceptionCode(t) != 21208 {
		t.Errorf("close: code %d, want 21208", r.exceptionCode(t))
	}
	if st := c.sessionStatus(access, b.session()); st.Status.Code != 440 {
		t.Errorf("session %+v, want 440", st.Status)
	}
}

// TestBatchInvoiceCountLimitIsPerPackage: a full package of MaxInvoicesPerSession invoices
// passes.
func TestBatchInvoiceCountLimitIsPerPackage(t *testing.T) {
	srv, c, access := batchServer(t, emulator.Config{MaxInvoicesPerSession: 3})
	var files []archiveFile
	for i := range 3 {
		files = append(files, archiveFile{strconv.Itoa(i) + ".xml", sample1("LIM/" + strconv.Itoa(i))})
	}
	b := c.sendBatch(access, newTestPackage(t, zipArchive(t, files...), 1<<20, "Zip"))
	srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
	if st := c.sessionStatus(access, b.session()); st.Status.Code != 200 || st.SuccessfulInvoiceCount != 3 {
		t.Errorf("session %+v, want 200 with 3 invoices", st)
	}
}
