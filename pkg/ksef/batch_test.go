package ksef

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchTime is the modification time written into test archives, for deterministic output.
var batchTime = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const testBatchRef = "20250626-SB-213D593000-4DE10D80A5-E9"

// testInvoices returns n invoices: the official sample with its number varied.
func testInvoices(t testing.TB, n int) []BatchInvoice {
	t.Helper()
	base := sampleInvoice(t)
	out := make([]BatchInvoice, n)
	for i := range out {
		num := fmt.Sprintf("<P_2>FV/BATCH/%04d</P_2>", i+1)
		doc := bytes.Replace(base, []byte("<P_2>FV2026/02/150</P_2>"), []byte(num), 1)
		if bytes.Equal(doc, base) {
			t.Fatal("sample invoice has no <P_2>FV2026/02/150</P_2>")
		}
		out[i] = BatchInvoice{FileName: fmt.Sprintf("faktura-%04d.xml", i+1), Content: doc}
	}
	return out
}

// fixedBatch builds a package with the test-vector key and IV.
func fixedBatch(t testing.TB, invoices []BatchInvoice, opts BatchOptions) *BatchPackage {
	t.Helper()
	if opts.ModTime.IsZero() {
		opts.ModTime = batchTime
	}
	pkg, err := buildBatch(invoices, opts, sequence(32), sequence(16), defaultBatchLimits)
	if err != nil {
		t.Fatalf("buildBatch: %v", err)
	}
	return pkg
}

// decryptPackage is what KSeF does with the parts: decrypt each one on its own, concatenate.
func decryptPackage(t testing.TB, pkg *BatchPackage, key, iv []byte) []byte {
	t.Helper()
	var archive []byte
	for _, p := range pkg.Parts {
		plain, err := decryptAESCBC(key, iv, p.Content)
		if err != nil {
			t.Fatalf("part %d does not decrypt on its own: %v", p.OrdinalNumber, err)
		}
		archive = append(archive, plain...)
	}
	return archive
}

type archivedFile struct {
	name    string
	content []byte
}

// unpack reads every file of a ZIP or tar.gz archive, in order.
func unpack(t testing.TB, archive []byte, c Compression) []archivedFile {
	t.Helper()
	var out []archivedFile
	switch c {
	case CompressionZip:
		zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
		if err != nil {
			t.Fatalf("not a ZIP archive: %v", err)
		}
		for _, f := range zr.File {
			if f.Method != zip.Deflate {
				t.Errorf("%s: method %d, want Deflate", f.Name, f.Method)
			}
			if !f.Modified.Equal(batchTime) {
				t.Errorf("%s: modified %v, want %v", f.Name, f.Modified, batchTime)
			}
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			out = append(out, archivedFile{f.Name, b})
		}
	case CompressionTarGz:
		gz, err := gzip.NewReader(bytes.NewReader(archive))
		if err != nil {
			t.Fatalf("not gzip: %v", err)
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("not a tar archive: %v", err)
			}
			if h.Typeflag != tar.TypeReg {
				t.Errorf("%s: type %c, want a regular file", h.Name, h.Typeflag)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, archivedFile{h.Name, b})
		}
	}
	return out
}

func sha256B64(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// TestBuildBatch checks the package against what KSeF verifies (PROTOCOL §7, §22 item 7):
// fileSize/fileHash of the whole unencrypted archive, each part at most MaxPartSize before
// encryption and encrypted on its own with the session key and IV, the size and hash of each
// encrypted part, and an archive holding each invoice byte for byte under its name.
func TestBuildBatch(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		opts      BatchOptions
		wantParts int // 0: more than one
	}{
		{"zip, one part", 3, BatchOptions{}, 1},
		{"zip, parts of 1000 bytes", 5, BatchOptions{MaxPartSize: 1000}, 0},
		{"zip, parts of 1 byte", 1, BatchOptions{MaxPartSize: 1}, 0},
		{"tar.gz, one part", 3, BatchOptions{Compression: CompressionTarGz}, 1},
		{"tar.gz, parts of 777 bytes", 5, BatchOptions{Compression: CompressionTarGz, MaxPartSize: 777}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			invoices := testInvoices(t, tt.n)
			if tt.opts.MaxPartSize == 1 {
				// 1-byte parts of a whole archive would exceed 50 parts; lift the limit.
				pkg, err := buildBatch(invoices, BatchOptions{MaxPartSize: 1, ModTime: batchTime}, sequence(32), sequence(16), batchLimits{parts: 1 << 20, archive: MaxBatchArchiveSize})
				if err != nil {
					t.Fatal(err)
				}
				verifyPackage(t, pkg, invoices, 1)
				return
			}
			pkg := fixedBatch(t, invoices, tt.opts)
			maxPart := tt.opts.MaxPartSize
			if maxPart == 0 {
				maxPart = MaxBatchPartSize
			}
			verifyPackage(t, pkg, invoices, maxPart)
			if tt.wantParts == 1 && len(pkg.Parts) != 1 {
				t.Errorf("%d parts, want 1", len(pkg.Parts))
			}
			if tt.wantParts == 0 && len(pkg.Parts) < 2 {
				t.Errorf("%d parts, want several", len(pkg.Parts))
			}
			wantCompression := tt.opts.Compression
			if wantCompression == "" {
				wantCompression = CompressionZip
			}
			if pkg.Compression != wantCompression {
				t.Errorf("compression %q, want %q", pkg.Compression, wantCompression)
			}
		})
	}
}

func verifyPackage(t *testing.T, pkg *BatchPackage, invoices []BatchInvoice, maxPart int64) {
	t.Helper()
	key, iv := sequence(32), sequence(16)
	if !bytes.Equal(pkg.Key, key) || !bytes.Equal(pkg.IV, iv) {
		t.Fatal("package key or IV differ from the ones given")
	}
	var archive []byte
	for i, p := range pkg.Parts {
		if p.OrdinalNumber != i+1 {
			t.Errorf("part %d has ordinal number %d", i+1, p.OrdinalNumber)
		}
		if p.Size != int64(len(p.Content)) || p.Hash != sha256B64(p.Content) {
			t.Errorf("part %d: size %d hash %s, want those of the encrypted content: %d %s", i+1, p.Size, p.Hash, len(p.Content), sha256B64(p.Content))
		}
		plain, err := decryptAESCBC(key, iv, p.Content)
		if err != nil {
			t.Fatalf("part %d does not decrypt on its own with the session key and IV: %v", i+1, err)
		}
		last := i == len(pkg.Parts)-1
		if int64(len(plain)) > maxPart || (!last && int64(len(plain)) != maxPart) {
			t.Errorf("part %d holds %d bytes before encryption, want %d (at most, for the last)", i+1, len(plain), maxPart)
		}
		if want := 16 * (len(plain)/16 + 1); len(p.Content) != want {
			t.Errorf("part %d: %d encrypted bytes for %d plain, want %d (no IV in front)", i+1, len(p.Content), len(plain), want)
		}
		archive = append(archive, plain...)
	}
	if pkg.Size != int64(len(archive)) || pkg.Hash != sha256B64(archive) {
		t.Errorf("fileSize %d fileHash %s, want those of the unencrypted archive: %d %s", pkg.Size, pkg.Hash, len(archive), sha256B64(archive))
	}
	files := unpack(t, archive, pkg.Compression)
	if len(files) != len(invoices) || len(pkg.Entries) != len(invoices) {
		t.Fatalf("%d files in the archive and %d entries, want %d", len(files), len(pkg.Entries), len(invoices))
	}
	for i, inv := range invoices {
		if files[i].name != inv.FileName || !bytes.Equal(files[i].content, inv.Content) {
			t.Errorf("file %d: %q (%d bytes), want %q (%d bytes) byte for byte", i+1, files[i].name, len(files[i].content), inv.FileName, len(inv.Content))
		}
		want := BatchEntry{FileName: inv.FileName, Size: len(inv.Content), Hash: sha256B64(inv.Content)}
		if pkg.Entries[i] != want {
			t.Errorf("entry %d: got %+v, want %+v", i+1, pkg.Entries[i], want)
		}
	}
}

// TestPartWriterMatchesWholeEncryption feeds archives of awkward lengths to the streaming
// encryptor in chunks of random sizes: each part must equal AES-CBC of its slice of the archive
// encrypted in one go.
func TestPartWriterMatchesWholeEncryption(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key, iv := sequence(32), sequence(16)
	for _, size := range []int{1, 15, 16, 17, 31, 32, 33, 255, 256, 1000, 4097} {
		for _, maxPart := range []int64{1, 15, 16, 17, 64, 100, 5000} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			w, err := newPartWriter(key, iv, maxPart, batchLimits{parts: 1 << 20, archive: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(40))
				if k, err := w.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("Write: %d, %v", k, err)
				}
				rest = rest[n:]
			}
			w.close()
			wantParts := (int64(size) + maxPart - 1) / maxPart
			if int64(len(w.parts)) != wantParts {
				t.Fatalf("size %d, parts of %d: %d parts, want %d", size, maxPart, len(w.parts), wantParts)
			}
			for i, p := range w.parts {
				from := int64(i) * maxPart
				want, err := encryptAESCBC(key, iv, data[from:min(from+maxPart, int64(size))])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p.Content, want) {
					t.Fatalf("size %d, parts of %d: part %d differs from AES-CBC of its slice", size, maxPart, i+1)
				}
			}
			if got := base64.StdEncoding.EncodeToString(w.whole.Sum(nil)); got != sha256B64(data) || w.total != int64(size) {
				t.Errorf("archive hash/size %s/%d, want %s/%d", got, w.total, sha256B64(data), size)
			}
		}
	}
}

// TestBuildBatchSizesPartsOnce: a part's buffer is allocated for about its final size, not
// grown by repeated copying, and never beyond what an encrypted part can hold.
func TestBuildBatchSizesPartsOnce(t *testing.T) {
	invoices := testInvoices(t, 2000)
	for _, tt := range []struct {
		name string
		opts BatchOptions
	}{
		{"zip", BatchOptions{}},
		{"zip in parts of 200 kB", BatchOptions{MaxPartSize: 200_000}},
		{"tar.gz", BatchOptions{Compression: CompressionTarGz}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pkg := fixedBatch(t, invoices, tt.opts)
			for _, p := range pkg.Parts {
				slack := cap(p.Content) - len(p.Content)
				if slack > len(p.Content)/10+2*minPartBuffer {
					t.Errorf("part %d: %d bytes in a buffer of %d", p.OrdinalNumber, len(p.Content), cap(p.Content))
				}
				if tt.opts.MaxPartSize > 0 && int64(cap(p.Content)) > tt.opts.MaxPartSize+16 {
					t.Errorf("part %d: capacity %d beyond the largest encrypted part", p.OrdinalNumber, cap(p.Content))
				}
			}
		})
	}
}

func TestBuildBatchDrawsFreshKeys(t *testing.T) {
	invoices := testInvoices(t, 1)
	a, err := BuildBatch(invoices, BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildBatch(invoices, BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Key) != 32 || len(a.IV) != 16 {
		t.Fatalf("key %d bytes, IV %d bytes, want 32 and 16", len(a.Key), len(a.IV))
	}
	if bytes.Equal(a.Key, b.Key) || bytes.Equal(a.IV, b.IV) {
		t.Error("two packages got the same key or IV")
	}
	// Decrypting with the package's own key gives the archive back.
	if archive := decryptPackage(t, a, a.Key, a.IV); sha256B64(archive) != a.Hash {
		t.Error("the package does not decrypt with its own key")
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if s := fmt.Sprintf(format, a); strings.Contains(s, fmt.Sprintf("%x", []byte(a.Key))) {
			t.Errorf("fmt %s of the package shows the key", format)
		}
	}
}

func TestBuildBatchErrors(t *testing.T) {
	valid := testInvoices(t, 2)
	with := func(name string) []BatchInvoice {
		return []BatchInvoice{valid[0], {FileName: name, Content: valid[1].Content}}
	}
	tests := []struct {
		name     string
		invoices []BatchInvoice
		opts     BatchOptions
		want     string
	}{
		{"no invoices", nil, BatchOptions{}, "no invoices"},
		{"empty content", []BatchInvoice{{FileName: "a.xml"}}, BatchOptions{}, "invoice 1 (\"a.xml\"): empty content"},
		{"empty name", with(""), BatchOptions{}, "invoice 2: empty file name"},
		{"slash", with("dir/a.xml"), BatchOptions{}, `contains '/'`},
		{"backslash", with(`dir\a.xml`), BatchOptions{}, `contains '\\'`},
		{"drive letter", with("C:a.xml"), BatchOptions{}, `contains ':'`},
		{"wildcard", with("a*.xml"), BatchOptions{}, `contains '*'`},
		{"dot dot", with(".."), BatchOptions{}, "is not a file"},
		{"control character", with("a\x01.xml"), BatchOptions{}, "control character"},
		{"C1 control character", with("a\u0085.xml"), BatchOptions{}, "control character"},
		{"not UTF-8", with("a\xff.xml"), BatchOptions{}, "not UTF-8"},
		{"too long", with(strings.Repeat("ą", 125) + ".xml"), BatchOptions{}, "longer than 128 characters"},
		{"duplicate", with(valid[0].FileName), BatchOptions{}, `invoice 2: file name "faktura-0001.xml" is already used by invoice 1`},
		{"duplicate ignoring case", with(strings.ToUpper(valid[0].FileName)), BatchOptions{}, "is already used by invoice 1"},
		{"negative part size", valid, BatchOptions{MaxPartSize: -1}, "MaxPartSize -1 outside 1-100000000"},
		{"part size over 100 MB", valid, BatchOptions{MaxPartSize: MaxBatchPartSize + 1}, "MaxPartSize 100000001 outside"},
		{"unknown compression", valid, BatchOptions{Compression: "SevenZip"}, `unknown compression "SevenZip"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg, err := BuildBatch(tt.invoices, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "ksef: build batch: ") {
				t.Fatalf("BuildBatch: got %v, want an error containing %q", err, tt.want)
			}
			if pkg != nil {
				t.Error("got a package with the error")
			}
		})
	}
	// A name of exactly 128 characters is fine.
	if _, err := BuildBatch(with(strings.Repeat("ą", 124)+".xml"), BatchOptions{}); err != nil {
		t.Errorf("128-character name: %v", err)
	}
}

func TestBuildBatchTooLarge(t *testing.T) {
	// Random content, so that neither format compresses it below the limits.
	invoices := make([]BatchInvoice, 20)
	for i := range invoices {
		invoices[i] = BatchInvoice{FileName: fmt.Sprintf("%d.xml", i), Content: []byte(base64.StdEncoding.EncodeToString(randomBytes(t, 2000)))}
	}
	tests := []struct {
		name   string
		limits batchLimits
		part   int64
		want   string
	}{
		{"too many parts", batchLimits{parts: 3, archive: MaxBatchArchiveSize}, 1000, "needs more than 3 parts of 1000 bytes"},
		{"archive too large", batchLimits{parts: MaxBatchParts, archive: 5000}, 1000, "the archive exceeds 5000 bytes"},
	}
	for _, tt := range tests {
		for _, c := range []Compression{CompressionZip, CompressionTarGz} {
			t.Run(tt.name+" "+string(c), func(t *testing.T) {
				_, err := buildBatch(invoices, BatchOptions{MaxPartSize: tt.part, Compression: c}, sequence(32), sequence(16), tt.limits)
				if !errors.Is(err, ErrBatchTooLarge) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want ErrBatchTooLarge: %s", err, tt.want)
				}
			})
		}
	}
}

// batchOpenHandler answers POST /v2/sessions/batch with one upload request per declared part,
// pointing at ts's /blob/{n}, and records the decoded request.
func batchOpenHandler(t *testing.T, ts *testServer, got *map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		body := decodeBody(t, readBody(t, r))
		*got = body
		var uploads []map[string]any
		for _, p := range field(t, body, "batchFile.fileParts").([]any) {
			n := p.(map[string]any)["ordinalNumber"].(json.Number).String()
			uploads = append(uploads, map[string]any{
				"ordinalNumber": json.Number(n),
				"method":        "PUT",
				"url":           ts.srv.URL + "/blob/" + n + "?sv=2025-01-05&sp=w&sig=SECRET%2FSIG%3D",
				"headers":       map[string]any{"x-ms-blob-type": "BlockBlob", "x-ms-meta-part": n},
			})
		}
		writeJSON(w, http.StatusCreated, map[string]any{"referenceNumber": testBatchRef, "partUploadRequests": uploads})
	}
}

func TestOpenBatchSession(t *testing.T) {
	ts := newTestServer(t)
	invoices := testInvoices(t, 2)
	pkg := fixedBatch(t, invoices, BatchOptions{})
	ts.mux.HandleFunc("/v2/sessions/batch", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		testHeader(t, r, "Content-Type", "application/json")
		raw := readBody(t, r)
		// With a fixed key, IV and modification time everything but the wrapped key is
		// deterministic.
		checkGoldenJSON(t, "open_batch_session", raw, "encryption.encryptedSymmetricKey")
		body := decodeBody(t, raw)
		if got := decryptOAEP(t, ts.symKey, b64Field(t, body, "encryption.encryptedSymmetricKey")); !bytes.Equal(got, pkg.Key) {
			t.Error("encryptedSymmetricKey does not hold the package key")
		}
		if got := field(t, body, "encryption.publicKeyId"); got != ts.symKey.id {
			t.Errorf("publicKeyId: got %v, want the SymmetricKeyEncryption key", got)
		}
		serveFile(t, w, http.StatusCreated, "batch_open.json")
	})
	s, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, nil)
	if err != nil {
		t.Fatalf("OpenBatchSession: %v", err)
	}
	want := &BatchSession{
		Handle: SessionHandle{ReferenceNumber: testBatchRef, FormCode: FormCodeFA3(), Key: pkg.Key, IV: pkg.IV},
		PartUploadRequests: []PartUpload{{
			OrdinalNumber: 1,
			Method:        "PUT",
			URL:           "https://ksef-api-storage/storage/00/20250626-sb-213d593000-4de10d80a5-e9/batch-parts/1?skoid=1ad7cfe8-2cb2-406b-b96c-6eefb55794db&sktid=647754c7-3974-4442-a425-c61341b61c69&skt=2025-06-26T09%3A40%3A54Z&ske=2025-06-26T10%3A10%3A54Z&sks=b&skv=2025-01-05&sv=2025-01-05&se=2025-06-26T10%3A10%3A54Z&sr=b&sp=w&sig=8mKZEU8Reuz%2Fn7wHi4T%2FY8BzLeD5l8bR2xJsBxIgDEY%3D",
			Headers:       map[string]string{"x-ms-blob-type": "BlockBlob"},
		}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("session:\ngot  %#v\nwant %#v", s, want)
	}
	if &s.Handle.Key[0] == &pkg.Key[0] {
		t.Error("the handle shares the package's key slice")
	}
}

func TestOpenBatchSessionRequest(t *testing.T) {
	tests := []struct {
		name    string
		opts    *BatchSessionOptions
		batch   BatchOptions
		offline bool
	}{
		{"zip in parts", nil, BatchOptions{MaxPartSize: 1500}, false},
		{"tar.gz, offline", &BatchSessionOptions{OfflineMode: true}, BatchOptions{Compression: CompressionTarGz}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			pkg := fixedBatch(t, testInvoices(t, 3), tt.batch)
			var body map[string]any
			ts.mux.HandleFunc("/v2/sessions/batch", batchOpenHandler(t, ts, &body))
			s, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, tt.opts)
			if err != nil {
				t.Fatalf("OpenBatchSession: %v", err)
			}
			if got := field(t, body, "offlineMode"); got != tt.offline {
				t.Errorf("offlineMode %v, want %v", got, tt.offline)
			}
			if got := field(t, body, "batchFile.compressionType"); got != string(pkg.Compression) {
				t.Errorf("compressionType %v, want %s", got, pkg.Compression)
			}
			if got := field(t, body, "batchFile.fileSize").(json.Number).String(); got != strconv.FormatInt(pkg.Size, 10) {
				t.Errorf("fileSize %s, want %d (the unencrypted archive)", got, pkg.Size)
			}
			if got := field(t, body, "batchFile.fileHash"); got != pkg.Hash {
				t.Errorf("fileHash %v, want %s (the unencrypted archive)", got, pkg.Hash)
			}
			parts := field(t, body, "batchFile.fileParts").([]any)
			if len(parts) != len(pkg.Parts) {
				t.Fatalf("%d fileParts, want %d", len(parts), len(pkg.Parts))
			}
			for i, p := range parts {
				m := p.(map[string]any)
				want := map[string]any{
					"ordinalNumber": json.Number(strconv.Itoa(i + 1)),
					"fileSize":      json.Number(strconv.Itoa(len(pkg.Parts[i].Content))),
					"fileHash":      sha256B64(pkg.Parts[i].Content),
				}
				if !reflect.DeepEqual(m, want) {
					t.Errorf("fileParts[%d] = %v, want %v (size and hash of the encrypted part)", i, m, want)
				}
			}
			if len(s.PartUploadRequests) != len(pkg.Parts) {
				t.Errorf("%d upload requests, want %d", len(s.PartUploadRequests), len(pkg.Parts))
			}
		})
	}
}

func TestOpenBatchSessionRefetchesRetiredKey(t *testing.T) {
	ts := newTestServer(t)
	pkg := fixedBatch(t, testInvoices(t, 1), BatchOptions{})
	from, to := testNow.AddDate(-1, 0, 0), testNow.AddDate(2, 0, 0)
	var calls atomic.Int32
	ts.mux.HandleFunc("/v2/sessions/batch", func(w http.ResponseWriter, r *http.Request) {
		body := decodeBody(t, readBody(t, r))
		if calls.Add(1) == 1 {
			ts.setKeys(ts.tokenKey.listing(from, to, KeyUsageKSeFToken), ts.rotatedKey.listing(from, to, KeyUsageSymmetricKey))
			writeJSON(w, http.StatusBadRequest, exceptionBody(CodeUnknownPublicKey, "Przesłany identyfikator klucza jest nieznany lub wskazuje na wycofany klucz."))
			return
		}
		if got := field(t, body, "encryption.publicKeyId"); got != ts.rotatedKey.id {
			t.Errorf("retry publicKeyId %v, want the new key", got)
		}
		decryptOAEP(t, ts.rotatedKey, b64Field(t, body, "encryption.encryptedSymmetricKey"))
		serveFile(t, w, http.StatusCreated, "batch_open.json")
	})
	if _, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, nil); err != nil {
		t.Fatalf("OpenBatchSession: %v", err)
	}
	if calls.Load() != 2 || ts.keyFetches() != 2 {
		t.Errorf("%d open calls and %d key fetches, want 2 and 2", calls.Load(), ts.keyFetches())
	}
}

func TestOpenBatchSessionInvalidArguments(t *testing.T) {
	good := fixedBatch(t, testInvoices(t, 1), BatchOptions{})
	modify := func(f func(p *BatchPackage)) *BatchPackage {
		p := *good
		p.Parts = append([]BatchPart(nil), good.Parts...)
		f(&p)
		return &p
	}
	tests := []struct {
		name string
		form FormCode
		pkg  *BatchPackage
		want string
	}{
		{"incomplete form code", FormCode{SystemCode: "FA (3)"}, good, "incomplete form code"},
		{"nil package", FormCodeFA3(), nil, "nil batch package"},
		{"short key", FormCodeFA3(), modify(func(p *BatchPackage) { p.Key = p.Key[:16] }), "key must be 32 bytes"},
		{"no IV", FormCodeFA3(), modify(func(p *BatchPackage) { p.IV = nil }), "IV must be 16 bytes"},
		{"no compression", FormCodeFA3(), modify(func(p *BatchPackage) { p.Compression = "" }), "unknown compression"},
		{"bad archive hash", FormCodeFA3(), modify(func(p *BatchPackage) { p.Hash = "abc" }), "archive hash"},
		{"archive too large", FormCodeFA3(), modify(func(p *BatchPackage) { p.Size = MaxBatchArchiveSize + 1 }), "archive size 5000000001"},
		{"no parts", FormCodeFA3(), modify(func(p *BatchPackage) { p.Parts = nil }), "no parts"},
		{"too many parts", FormCodeFA3(), modify(func(p *BatchPackage) { p.Parts = make([]BatchPart, 51) }), "51 parts, at most 50"},
		{"wrong ordinal", FormCodeFA3(), modify(func(p *BatchPackage) { p.Parts[0].OrdinalNumber = 2 }), "part 1 has ordinal number 2"},
		{"part size not a block multiple", FormCodeFA3(), modify(func(p *BatchPackage) { p.Parts[0].Size = 17 }), "size 17"},
		{"bad part hash", FormCodeFA3(), modify(func(p *BatchPackage) { p.Parts[0].Hash = "" }), "part 1: hash"},
	}
	ts := newTestServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.client.OpenBatchSession(t.Context(), tt.form, tt.pkg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if ts.keyFetches() != 0 {
		t.Error("invalid arguments reached the network")
	}
}

func TestOpenBatchSessionBadReply(t *testing.T) {
	pkg := fixedBatch(t, testInvoices(t, 3), BatchOptions{MaxPartSize: 2000})
	if len(pkg.Parts) < 2 {
		t.Fatalf("want a package of several parts, got %d", len(pkg.Parts))
	}
	upload := func(n int, method, u string) map[string]any {
		return map[string]any{"ordinalNumber": n, "method": method, "url": u, "headers": map[string]any{}}
	}
	all := func() []any {
		var out []any
		for i := range pkg.Parts {
			out = append(out, upload(i+1, "PUT", "https://blob.example/"+strconv.Itoa(i+1)+"?sig=x"))
		}
		return out
	}
	tests := []struct {
		name  string
		reply map[string]any
		want  string
	}{
		{"no reference number", map[string]any{"partUploadRequests": all()}, "no reference number"},
		{"one request missing", map[string]any{"referenceNumber": testBatchRef, "partUploadRequests": all()[1:]}, "part upload requests for"},
		{"duplicate ordinal", map[string]any{"referenceNumber": testBatchRef, "partUploadRequests": append(all()[1:], all()[1])}, "has ordinal number 2"},
		{"relative URL", map[string]any{"referenceNumber": testBatchRef, "partUploadRequests": append([]any{upload(1, "PUT", "/blob/1")}, all()[1:]...)}, "part 1: pre-signed URL must be absolute"},
		{"no method", map[string]any{"referenceNumber": testBatchRef, "partUploadRequests": append([]any{upload(1, "", "https://blob.example/1")}, all()[1:]...)}, "part 1: upload request has no method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/sessions/batch", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusCreated, tt.reply)
			})
			_, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenBatchSessionErrors(t *testing.T) {
	pkg := fixedBatch(t, testInvoices(t, 1), BatchOptions{})
	for _, code := range []int{CodeBatchPartSize, CodeBatchTooManyParts, CodeValidation} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			ts := newTestServer(t)
			var calls atomic.Int32
			ts.mux.HandleFunc("/v2/sessions/batch", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				writeJSON(w, http.StatusBadRequest, exceptionBody(code, "Nieprawidłowy rozmiar części pakietu."))
			})
			_, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, nil)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || !apiErr.HasCode(code) || apiErr.Op != "OpenBatchSession" {
				t.Fatalf("got %v, want an OpenBatchSession *APIError with code %d", err, code)
			}
			if calls.Load() != 1 {
				t.Errorf("%d calls, want 1 (a 400 is not retried)", calls.Load())
			}
		})
	}
}

// blobServer stands in for the blob store behind KSeF's pre-signed upload URLs.
type blobServer struct {
	t  *testing.T
	ts *testServer

	mu       sync.Mutex
	received map[int][]byte // part -> body of the last successful upload
	attempts map[int]int
	// reply, if set, decides the answer to an attempt (0: 201).
	reply func(part, attempt int) int
}

func newBlobServer(t *testing.T, ts *testServer) *blobServer {
	b := &blobServer{t: t, ts: ts, received: map[int][]byte{}, attempts: map[int]int{}}
	ts.mux.HandleFunc("/blob/{n}", func(w http.ResponseWriter, r *http.Request) {
		// §22 item 8: the method and headers of the upload request, and no bearer token.
		testMethod(t, r, http.MethodPut)
		testHeader(t, r, "Authorization", "")
		testHeader(t, r, "X-Error-Format", "")
		testHeader(t, r, "x-ms-blob-type", "BlockBlob")
		testHeader(t, r, "x-ms-meta-part", r.PathValue("n"))
		if r.URL.Query().Get("sig") != "SECRET/SIG=" {
			t.Errorf("the URL's query was altered: %q", r.URL.RawQuery)
		}
		n, _ := strconv.Atoi(r.PathValue("n"))
		body := readBody(t, r)
		if r.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d for %d bytes", r.ContentLength, len(body))
		}
		b.mu.Lock()
		b.attempts[n]++
		status := 0
		if b.reply != nil {
			status = b.reply(n, b.attempts[n])
		}
		if status == 0 {
			b.received[n] = body
			status = http.StatusCreated
		}
		b.mu.Unlock()
		if status >= 400 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>Try later.</Message></Error>`)
			return
		}
		w.WriteHeader(status)
	})
	return b
}

// openTestBatch opens a session for pkg against ts's batch endpoint, with uploads to ts's blob
// store.
func openTestBatch(t *testing.T, ts *testServer, pkg *BatchPackage) *BatchSession {
	t.Helper()
	var body map[string]any
	ts.mux.HandleFunc("/v2/sessions/batch", batchOpenHandler(t, ts, &body))
	s, err := ts.client.OpenBatchSession(t.Context(), FormCodeFA3(), pkg, nil)
	if err != nil {
		t.Fatalf("OpenBatchSession: %v", err)
	}
	return s
}

func TestUploadBatchParts(t *testing.T) {
	ts := newTestServer(t)
	blobs := newBlobServer(t, ts)
	pkg := fixedBatch(t, testInvoices(t, 4), BatchOptions{MaxPartSize: 1000})
	s := openTestBatch(t, ts, pkg)
	if err := ts.client.UploadBatchParts(t.Context(), s, pkg, 3); err != nil {
		t.Fatalf("UploadBatchParts: %v", err)
	}
	for _, p := range pkg.Parts {
		if got := blobs.received[p.OrdinalNumber]; !bytes.Equal(got, p.Content) {
			t.Errorf("part %d: the blob store got %d bytes, want the %d encrypted bytes", p.OrdinalNumber, len(got), len(p.Content))
		}
		if blobs.attempts[p.OrdinalNumber] != 1 {
			t.Errorf("part %d uploaded %d times", p.OrdinalNumber, blobs.attempts[p.OrdinalNumber])
		}
	}
	if strings.Contains(ts.logs.String(), "SECRET") || strings.Contains(ts.logs.String(), "sig=") {
		t.Errorf("the log shows a URL signature:\n%s", ts.logs)
	}
}

// TestUploadBatchPartsExactRequest looks at the request as the transport gets it: header names
// spelt as KSeF gave them, the method as given, the URL untouched, nothing else of ours but
// User-Agent.
func TestUploadBatchPartsExactRequest(t *testing.T) {
	pkg := fixedBatch(t, testInvoices(t, 1), BatchOptions{})
	const rawURL = "https://storage.example/container/part-1?sv=2025-01-05&sp=w&sig=ab%2Fc%3D"
	var got *http.Request
	var body []byte
	c, err := NewClient(WithAccessToken(StaticAccessToken(testAccessToken)), WithHTTPClient(doerFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		body, _ = io.ReadAll(r.Body)
		return &http.Response{StatusCode: http.StatusCreated, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
	})))
	if err != nil {
		t.Fatal(err)
	}
	s := &BatchSession{
		Handle: SessionHandle{ReferenceNumber: testBatchRef},
		PartUploadRequests: []PartUpload{{OrdinalNumber: 1, Method: "PUT", URL: rawURL,
			Headers: map[string]string{"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}}},
	}
	if err := c.UploadBatchParts(t.Context(), s, pkg, 0); err != nil {
		t.Fatal(err)
	}
	if got.Method != "PUT" || got.URL.String() != rawURL {
		t.Errorf("request %s %s, want PUT %s", got.Method, got.URL, rawURL)
	}
	wantHeader := http.Header{
		"x-ms-blob-type": {"BlockBlob"},
		"Content-Type":   {"application/octet-stream"},
		"User-Agent":     {defaultUserAgent},
	}
	if !reflect.DeepEqual(got.Header, wantHeader) {
		t.Errorf("headers %v, want exactly %v", got.Header, wantHeader)
	}
	if !bytes.Equal(body, pkg.Parts[0].Content) {
		t.Error("the body is not the encrypted part")
	}
}

func TestUploadBatchPartsRetries(t *testing.T) {
	ts := newTestServer(t)
	blobs := newBlobServer(t, ts)
	// Part 2 fails with the blob store's transient errors, 500 included, before succeeding.
	blobs.reply = func(part, attempt int) int {
		if part == 2 && attempt <= 3 {
			return []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests}[attempt-1]
		}
		return 0
	}
	pkg := fixedBatch(t, testInvoices(t, 4), BatchOptions{MaxPartSize: 2000})
	s := openTestBatch(t, ts, pkg)
	if err := ts.client.UploadBatchParts(t.Context(), s, pkg, 2); err != nil {
		t.Fatalf("UploadBatchParts: %v", err)
	}
	if blobs.attempts[2] != 4 || !bytes.Equal(blobs.received[2], pkg.Parts[1].Content) {
		t.Errorf("part 2: %d attempts, want 4 ending with the same bytes", blobs.attempts[2])
	}
	if waits := ts.recordedWaits(); len(waits) != 3 {
		t.Errorf("waits %v, want 3 (one per retry)", waits)
	}
}

func TestUploadBatchPartsRetriesTransportErrors(t *testing.T) {
	pkg := fixedBatch(t, testInvoices(t, 1), BatchOptions{})
	var attempts int
	var bodies [][]byte
	c, err := NewClient(
		WithWait(func(ctx context.Context, d time.Duration) error { return nil }),
		WithHTTPClient(doerFunc(func(r *http.Request) (*http.Response, error) {
			attempts++
			b, _ := io.ReadAll(r.Body)
			bodies = append(bodies, b)
			if attempts == 1 {
				// The connection broke after the request went out: safe to repeat for an upload.
				return nil, &url.Error{Op: "Put", URL: r.URL.String(), Err: io.ErrUnexpectedEOF}
			}
			return &http.Response{StatusCode: http.StatusCreated, Body: io.NopCloser(strings.NewReader(""))}, nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	s := &BatchSession{PartUploadRequests: []PartUpload{{OrdinalNumber: 1, Method: "PUT", URL: "https://blob.example/1?sig=s"}}}
	if err := c.UploadBatchParts(t.Context(), s, pkg, 1); err != nil {
		t.Fatalf("UploadBatchParts: %v", err)
	}
	if attempts != 2 || !bytes.Equal(bodies[0], bodies[1]) || !bytes.Equal(bodies[1], pkg.Parts[0].Content) {
		t.Errorf("%d attempts, want 2 sending the same encrypted part", attempts)
	}
}

func TestUploadBatchPartsFailure(t *testing.T) {
	ts := newTestServer(t, WithRetryPolicy(RetryPolicy{MaxAttempts: 2}))
	blobs := newBlobServer(t, ts)
	blobs.reply = func(part, attempt int) int {
		if part == 2 {
			return http.StatusForbidden // the upload window has closed: not retried
		}
		return 0
	}
	pkg := fixedBatch(t, testInvoices(t, 4), BatchOptions{MaxPartSize: 2000})
	s := openTestBatch(t, ts, pkg)
	err := ts.client.UploadBatchParts(t.Context(), s, pkg, 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, ErrForbidden) || apiErr.Op != "UploadBatchParts part 2" {
		t.Fatalf("got %v, want the 403 of part 2", err)
	}
	if !strings.Contains(err.Error(), "ServerBusy") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %q should quote the blob store's error code and not the URL signature", err)
	}
	if blobs.attempts[2] != 1 {
		t.Errorf("part 2: %d attempts, want 1", blobs.attempts[2])
	}
	// One at a time: the failure of part 2 stops the parts after it.
	if n := len(blobs.attempts); n != 2 {
		t.Errorf("%d parts attempted, want 2", n)
	}
}

func TestUploadBatchPartsConcurrency(t *testing.T) {
	ts := newTestServer(t)
	var inFlight, peak atomic.Int32
	gate := make(chan struct{})
	var once sync.Once
	const limit = 2
	ts.mux.HandleFunc("/blob/{n}", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == limit {
			once.Do(func() { close(gate) })
		}
		// Hold every upload until the limit is reached once: a client that sends more at
		// once shows a higher peak; one that sends fewer ends by the context.
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusCreated)
	})
	pkg := fixedBatch(t, testInvoices(t, 6), BatchOptions{MaxPartSize: 1500})
	s := openTestBatch(t, ts, pkg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := ts.client.UploadBatchParts(ctx, s, pkg, limit); err != nil {
		t.Fatalf("UploadBatchParts: %v", err)
	}
	if peak.Load() != limit {
		t.Errorf("at most %d uploads at once, want %d", peak.Load(), limit)
	}
}

func TestUploadBatchPartsInvalid(t *testing.T) {
	ts := newTestServer(t)
	pkg := fixedBatch(t, testInvoices(t, 3), BatchOptions{MaxPartSize: 2000})
	full := &BatchSession{}
	for _, p := range pkg.Parts {
		full.PartUploadRequests = append(full.PartUploadRequests, PartUpload{OrdinalNumber: p.OrdinalNumber, Method: "PUT", URL: ts.srv.URL + "/blob/x"})
	}
	truncated := *pkg
	truncated.Parts = append([]BatchPart(nil), pkg.Parts...)
	truncated.Parts[0].Content = truncated.Parts[0].Content[:16]
	tests := []struct {
		name    string
		session *BatchSession
		pkg     *BatchPackage
		want    string
	}{
		{"nil session", nil, pkg, "nil session or package"},
		{"missing request", &BatchSession{PartUploadRequests: full.PartUploadRequests[1:]}, pkg, "no upload request for part 1"},
		{"content and size differ", full, &truncated, "part 1 holds 16 bytes"},
		{"no parts", full, &BatchPackage{}, "no parts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ts.client.UploadBatchParts(t.Context(), tt.session, tt.pkg, 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestUploadBatchPartsCancelled(t *testing.T) {
	ts := newTestServer(t)
	newBlobServer(t, ts)
	pkg := fixedBatch(t, testInvoices(t, 2), BatchOptions{MaxPartSize: 2000})
	s := openTestBatch(t, ts, pkg)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ts.client.UploadBatchParts(ctx, s, pkg, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestPartUploadHidesSignature(t *testing.T) {
	u := PartUpload{OrdinalNumber: 1, Method: "PUT", URL: "https://blob.example/p/1?sv=1&sig=SECRET", Headers: map[string]string{"x-ms-blob-type": "BlockBlob"}}
	s := &BatchSession{PartUploadRequests: []PartUpload{u}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, s); strings.Contains(out, "SECRET") || !strings.Contains(out, "blob.example/p/1") {
			t.Errorf("fmt %s: %s", format, out)
		}
	}
}

func TestCloseBatchSession(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/batch/{ref}/close", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		if r.PathValue("ref") != testBatchRef {
			t.Errorf("path: got %s", r.URL.Path)
		}
		if len(readBody(t, r)) != 0 {
			t.Error("close has a body")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if err := ts.client.CloseBatchSession(t.Context(), testBatchRef); err != nil {
		t.Fatalf("CloseBatchSession: %v", err)
	}
	if err := ts.client.CloseBatchSession(t.Context(), ""); err == nil {
		t.Error(`CloseBatchSession(""): got no error`)
	}
}

func TestCloseBatchSessionErrors(t *testing.T) {
	for _, code := range []int{CodeBatchPartMissing, CodeBatchPartSize, CodeBatchTimeout, CodeSessionStatus} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/sessions/batch/{ref}/close", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusBadRequest, exceptionBody(code, "Pakiet nie może być pusty.", "Nie przesłano zadeklarowanej '2' części pliku."))
			})
			err := ts.client.CloseBatchSession(t.Context(), testBatchRef)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || !apiErr.HasCode(code) || apiErr.Op != "CloseBatchSession" || apiErr.Temporary() {
				t.Fatalf("got %v, want a permanent CloseBatchSession *APIError with code %d", err, code)
			}
		})
	}
}
