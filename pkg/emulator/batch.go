package emulator

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	refBatch = "SB" // batch session

	// BatchPartUploadWindow is the upload time a batch session allows per declared part: a
	// session of n parts takes uploads, and its close, for n times this long after it opened
	// (PROTOCOL §7). Then upload links answer 403 and closing gives 21208.
	BatchPartUploadWindow = 20 * time.Minute

	uploadPrefix = "/upload/"

	maxBatchParts         = 50
	maxBatchPartSize      = 100_000_000 // bytes of a part before encryption
	maxBatchPartEncrypted = maxBatchPartSize + aes.BlockSize
	maxBatchArchiveSize   = 5_000_000_000
	maxInvoiceFileName    = 128 // characters of invoiceFileName
)

// batchSession is what a session opened with POST /sessions/batch has on top of a session: the
// declared package and its uploaded parts. The session's validUntil is the end of the upload
// window; closedAt is set by POST .../close, which also processes the package, so that from
// then on the session's invoices exist and their statuses follow the clock as online ones do.
type batchSession struct {
	compression string // Zip or TarGz
	fileSize    int64  // declared size of the unencrypted archive
	fileHash    string // declared hash of the unencrypted archive
	parts       []batchPart
	offline     bool
	processing  bool       // POST .../close is unpacking and verifying the package
	failure     statusInfo // package-level failure found by processing (405, 420, 430, 435); Code 0 if none
}

// batchPart is a declared part and its last upload.
type batchPart struct {
	size     int64  // declared size of the encrypted part
	hash     string // declared hash of the encrypted part
	uploaded bool
	content  []byte // the last upload, kept until the session is closed
}

// batchStatus is the status of a batch session at now (the batch rows of the table in
// SessionStatusResponse): 100 open, 150 processing, then 200, a package failure, 440 or 445.
func (s *session) batchStatus(now time.Time, processing time.Duration) statusInfo {
	b := s.batch
	switch {
	case s.keyFailed:
		return statusInfo{Code: 415, Description: "Błąd odszyfrowania dostarczonego klucza"}
	case b.processing:
		return statusInfo{Code: 150, Description: "Trwa przetwarzanie"}
	case s.closedAt.IsZero() && now.Before(s.validUntil):
		return statusInfo{Code: 100, Description: "Sesja wsadowa rozpoczęta"}
	case s.closedAt.IsZero():
		return statusInfo{Code: 440, Description: "Sesja anulowana", Details: []string{"Przekroczono czas wysyłki"}}
	}
	done, ok := s.processedAt(s.closedAt, processing)
	if !ok || now.Before(done) {
		return statusInfo{Code: 150, Description: "Trwa przetwarzanie"}
	}
	if b.failure.Code != 0 {
		return b.failure
	}
	succeeded, _ := s.counts(now)
	switch {
	case len(s.invoices) == 0:
		return statusInfo{Code: 440, Description: "Sesja anulowana", Details: []string{"Nie przesłano faktur"}}
	case succeeded == 0:
		return statusInfo{Code: 445, Description: "Błąd weryfikacji, brak poprawnych faktur"}
	}
	return statusInfo{Code: 200, Description: "Sesja wsadowa przetworzona pomyślnie"}
}

type batchFilePartJSON struct {
	OrdinalNumber *int    `json:"ordinalNumber"`
	FileSize      *int64  `json:"fileSize"`
	FileHash      *string `json:"fileHash"`
}

type batchFileJSON struct {
	FileSize        *int64              `json:"fileSize"`
	FileHash        *string             `json:"fileHash"`
	CompressionType *string             `json:"compressionType"`
	FileParts       []batchFilePartJSON `json:"fileParts"`
}

type openBatchRequest struct {
	FormCode    *formCode       `json:"formCode"`
	BatchFile   *batchFileJSON  `json:"batchFile"`
	Encryption  *encryptionJSON `json:"encryption"`
	OfflineMode bool            `json:"offlineMode"`
}

type partUploadRequest struct {
	OrdinalNumber int               `json:"ordinalNumber"`
	Method        string            `json:"method"`
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers"`
}

type openBatchResponse struct {
	ReferenceNumber    string              `json:"referenceNumber"`
	PartUploadRequests []partUploadRequest `json:"partUploadRequests"`
}

// POST /sessions/batch
func (e *Emulator) handleOpenBatch(q *request) {
	var req openBatchRequest
	if !q.decodeJSON(&req) {
		return
	}
	b, aerr := req.validate()
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	form := q.supportedForm(*req.FormCode)
	if form == nil {
		return
	}
	s := e.startSession(q, &session{
		ref:        newReferenceNumber(q.now, refBatch),
		form:       *form,
		validUntil: q.now.Add(time.Duration(len(b.parts)) * BatchPartUploadWindow),
		batch:      b,
	}, req.Encryption)
	if s == nil {
		return
	}
	resp := openBatchResponse{ReferenceNumber: s.ref}
	for i := range b.parts {
		resp.PartUploadRequests = append(resp.PartUploadRequests, partUploadRequest{
			OrdinalNumber: i + 1,
			Method:        http.MethodPut,
			URL:           e.uploadURL(q.r, s.ref, i+1, s.validUntil),
			Headers:       map[string]string{"x-ms-blob-type": "BlockBlob"},
		})
	}
	q.json(http.StatusCreated, resp)
}

// validate checks an OpenBatchSessionRequest as KSeF does: 21405 for missing or malformed
// fields, 21161 for more than 50 parts, 21157 for a part over 100 MB before encryption, a size
// no AES-CBC ciphertext has, or part sizes that cannot add up to the declared archive size.
func (req *openBatchRequest) validate() (*batchSession, *apiError) {
	if req.FormCode == nil || req.BatchFile == nil || req.Encryption == nil ||
		req.Encryption.EncryptedSymmetricKey == nil || req.Encryption.InitializationVector == nil {
		return nil, newAPIError(codeValidation, "Pola 'formCode', 'batchFile' i 'encryption' (encryptedSymmetricKey, initializationVector) są wymagane.")
	}
	f := req.BatchFile
	if f.FileSize == nil || f.FileHash == nil || len(f.FileParts) == 0 {
		return nil, newAPIError(codeValidation, "Pola 'batchFile.fileSize', 'batchFile.fileHash' i 'batchFile.fileParts' (co najmniej jedna część) są wymagane.")
	}
	compression := "Zip"
	if f.CompressionType != nil {
		compression = *f.CompressionType
	}
	if compression != "Zip" && compression != "TarGz" {
		return nil, newAPIError(codeValidation, "Pole 'batchFile.compressionType' musi mieć wartość Zip lub TarGz.")
	}
	if *f.FileSize < 1 || *f.FileSize > maxBatchArchiveSize {
		return nil, newAPIError(codeValidation, fmt.Sprintf("Rozmiar paczki musi mieścić się w zakresie 1-%d B.", int64(maxBatchArchiveSize)))
	}
	if !isSHA256Base64(*f.FileHash) {
		return nil, newAPIError(codeValidation, "Skrót musi być wartością SHA-256 zakodowaną w Base64 (44 znaki).")
	}
	if len(*req.Encryption.InitializationVector) != aes.BlockSize {
		return nil, newAPIError(codeValidation, "Wektor inicjalizujący musi mieć długość 16 bajtów.")
	}
	if len(f.FileParts) > maxBatchParts {
		return nil, newAPIError(codeBatchTooManyParts, fmt.Sprintf("Zadeklarowano %d części paczki; dozwolone jest co najwyżej %d.", len(f.FileParts), maxBatchParts))
	}
	parts := make([]batchPart, len(f.FileParts))
	seen := make([]bool, len(f.FileParts))
	for _, p := range f.FileParts {
		if p.OrdinalNumber == nil || p.FileSize == nil || p.FileHash == nil {
			return nil, newAPIError(codeValidation, "Pola 'ordinalNumber', 'fileSize' i 'fileHash' części paczki są wymagane.")
		}
		n := *p.OrdinalNumber
		if n < 1 || n > len(parts) || seen[n-1] {
			return nil, newAPIError(codeValidation, fmt.Sprintf("Numery porządkowe części paczki muszą być kolejnymi liczbami od 1 do %d.", len(parts)))
		}
		seen[n-1] = true
		if !isSHA256Base64(*p.FileHash) {
			return nil, newAPIError(codeValidation, "Skrót musi być wartością SHA-256 zakodowaną w Base64 (44 znaki).")
		}
		size := *p.FileSize
		switch {
		case size > maxBatchPartEncrypted:
			return nil, newAPIError(codeBatchPartSize, fmt.Sprintf("Część '%d' przekracza dozwolony rozmiar %d B przed zaszyfrowaniem.", n, maxBatchPartSize))
		case size < aes.BlockSize || size%aes.BlockSize != 0:
			return nil, newAPIError(codeBatchPartSize, fmt.Sprintf("Rozmiar zaszyfrowanej części '%d' (%d B) nie jest dodatnią wielokrotnością %d B.", n, size, aes.BlockSize))
		}
		parts[n-1] = batchPart{size: size, hash: *p.FileHash}
	}
	// Each part of p bytes encrypts to 16*(p/16+1) bytes, so it held 1 to 16 bytes fewer.
	var encrypted int64
	for _, p := range parts {
		encrypted += p.size
	}
	if n := int64(len(parts)); *f.FileSize < encrypted-n*aes.BlockSize || *f.FileSize > encrypted-n {
		return nil, newAPIError(codeBatchPartSize, fmt.Sprintf("Rozmiar paczki (%d B) nie zgadza się z rozmiarami jej zaszyfrowanych części (razem %d B).", *f.FileSize, encrypted))
	}
	return &batchSession{
		compression: compression,
		fileSize:    *f.FileSize,
		fileHash:    *f.FileHash,
		parts:       parts,
		offline:     req.OfflineMode,
	}, nil
}

// uploadURL returns the pre-signed upload link of a part, in the style of the Azure blob links
// KSeF hands out: PUT with x-ms-blob-type: BlockBlob, no bearer, valid until expires.
func (e *Emulator) uploadURL(r *http.Request, sessionRef string, ordinal int, expires time.Time) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p := uploadPrefix + sessionRef + "/" + strconv.Itoa(ordinal)
	se := strconv.FormatInt(expires.Unix(), 10)
	v := url.Values{"se": {se}, "sp": {"w"}, "sig": {e.linkSignature(p, se)}}
	return scheme + "://" + r.Host + p + "?" + v.Encode()
}

// PUT /upload/{referenceNumber}/{ordinalNumber}?se=...&sig=...: a part upload. Like the blob
// store behind KSeF it ignores Authorization and is not rate-limited; it answers 201, or 400
// (another method, x-ms-blob-type missing or not BlockBlob), 403 (bad signature, the upload
// window over, the session already closed), 404 (no such session or part) or 413 (over 100 MB
// encrypted), with an XML error body. A part may be uploaded again; the last upload counts.
func (e *Emulator) handleUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		writeBlobError(w, http.StatusBadRequest, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
		return
	}
	now := e.now()
	se := r.URL.Query().Get("se")
	exp, err := strconv.ParseInt(se, 10, 64)
	if err != nil || !hmac.Equal([]byte(r.URL.Query().Get("sig")), []byte(e.linkSignature(r.URL.Path, se))) {
		writeBlobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
		return
	}
	if now.Unix() >= exp {
		writeBlobError(w, http.StatusForbidden, "AuthenticationFailed", "Signature not valid in the specified time frame.")
		return
	}
	switch r.Header.Get("x-ms-blob-type") {
	case "BlockBlob":
	case "":
		writeBlobError(w, http.StatusBadRequest, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")
		return
	default:
		writeBlobError(w, http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-blob-type.")
		return
	}
	body, err := readPart(r)
	switch {
	case errors.Is(err, errPartTooLarge):
		writeBlobError(w, http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit.")
		return
	case err != nil:
		writeBlobError(w, http.StatusBadRequest, "InvalidInput", "The request body could not be read.")
		return
	}
	ordinal, _ := strconv.Atoi(r.PathValue("ordinalNumber"))
	e.mu.Lock()
	s := e.st.sessions[r.PathValue("referenceNumber")]
	var part *batchPart
	if s != nil && s.batch != nil && ordinal >= 1 && ordinal <= len(s.batch.parts) {
		part = &s.batch.parts[ordinal-1]
	}
	switch {
	case part == nil:
		e.mu.Unlock()
		writeBlobError(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
		return
	case !now.Before(s.validUntil): // the upload window was cut short (Emulator.ExpireSessions)
		e.mu.Unlock()
		writeBlobError(w, http.StatusForbidden, "AuthenticationFailed", "Signature not valid in the specified time frame.")
		return
	case s.batch.processing || !s.closedAt.IsZero():
		e.mu.Unlock()
		writeBlobError(w, http.StatusForbidden, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
		return
	}
	part.content, part.uploaded = body, true
	e.mu.Unlock()
	sum := md5.Sum(body) // Azure reports the MD5 of a stored blob
	w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	w.Header().Set("ETag", `"0x`+randomHex(15)+`"`)
	w.Header().Set("Last-Modified", now.UTC().Format(http.TimeFormat))
	w.Header().Set("x-ms-request-server-encrypted", "true")
	w.WriteHeader(http.StatusCreated)
}

var errPartTooLarge = errors.New("part too large")

// readPart reads an uploaded part into a buffer of its Content-Length, or, for a body of unknown
// length, up to one byte over the largest part.
func readPart(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBatchPartEncrypted {
		return nil, errPartTooLarge
	}
	if r.ContentLength >= 0 {
		body := make([]byte, r.ContentLength)
		_, err := io.ReadFull(r.Body, body)
		return body, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBatchPartEncrypted+1))
	if err == nil && len(body) > maxBatchPartEncrypted {
		return nil, errPartTooLarge
	}
	return body, err
}

// POST /sessions/batch/{referenceNumber}/close: checks that every declared part was uploaded
// with its declared size (21205, 21157) within the upload window (21208), then processes the
// package before answering 204, so that the session's outcome is settled; the statuses still
// follow the clock (150 until processed, invoices 100 -> 150 -> final).
func (e *Emulator) handleCloseBatch(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	s := q.sessionLocked(ref)
	if s == nil {
		e.mu.Unlock()
		return
	}
	in, aerr := e.startCloseLocked(s, q.now)
	e.mu.Unlock()
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	res := e.processBatch(in)
	e.mu.Lock()
	e.commitBatchLocked(s, res)
	e.mu.Unlock()
	q.noContent()
}

// batchInput is what processing a package needs, taken from the session at close.
type batchInput struct {
	key, iv     []byte
	compression string
	fileSize    int64
	fileHash    string
	parts       [][]byte // uploaded parts, by ordinal
	partHashes  []string // declared hashes of the encrypted parts
	context     contextID
	now         time.Time // when the session was closed
	maxInvoices int
}

// startCloseLocked checks that the batch session s may be closed at now and, if so, marks it
// closed and processing and hands its parts over.
func (e *Emulator) startCloseLocked(s *session, now time.Time) (batchInput, *apiError) {
	b := s.batch
	if b == nil {
		return batchInput{}, newAPIError(codeSessionNotFound, fmt.Sprintf("Sesja wsadowa o numerze referencyjnym %s nie została znaleziona.", s.ref))
	}
	if !s.keyFailed && !b.processing && s.closedAt.IsZero() && !now.Before(s.validUntil) {
		return batchInput{}, newAPIError(codeBatchTimeout, "Sesja anulowana, przekroczony czas wysyłki.")
	}
	if st := s.status(now, e.cfg.ProcessingDelay); st.Code != 100 {
		return batchInput{}, newAPIError(codeSessionStatus, fmt.Sprintf("Status sesji %d uniemożliwia jej zamknięcie.", st.Code))
	}
	for i, p := range b.parts {
		if !p.uploaded {
			return batchInput{}, newAPIError(codeBatchPackageEmpty, fmt.Sprintf("Nie przesłano zadeklarowanej '%d' części pliku.", i+1))
		}
	}
	for i, p := range b.parts {
		if int64(len(p.content)) != p.size {
			return batchInput{}, newAPIError(codeBatchPartSize, fmt.Sprintf("Zadeklarowany rozmiar części '%d' nie zgadza się z rzeczywistym.", i+1))
		}
	}
	in := batchInput{
		key:         s.key,
		iv:          s.iv,
		compression: b.compression,
		fileSize:    b.fileSize,
		fileHash:    b.fileHash,
		context:     s.context,
		now:         now,
		maxInvoices: e.cfg.MaxInvoicesPerSession,
	}
	for i := range b.parts {
		in.parts = append(in.parts, b.parts[i].content)
		in.partHashes = append(in.partHashes, b.parts[i].hash)
		b.parts[i].content = nil // processing releases each part once decrypted
	}
	s.closedAt = now
	b.processing = true
	return in, nil
}

// batchResult is the outcome of processing a package: a package-level failure, or one file per
// invoice in archive order.
type batchResult struct {
	failure statusInfo
	files   []batchFile
}

// batchFile is one file of the archive and its verdict.
type batchFile struct {
	name string
	hash string // SHA-256 of the whole file
	doc  []byte // kept only when the verdict is clean
	v    verdict
}

func batchFailure(code int, description string, details ...string) batchResult {
	return batchResult{failure: statusInfo{Code: code, Description: description, Details: details}}
}

// processBatch verifies the parts against their declared hashes, decrypts each on its own and
// concatenates them, checks the archive's declared size and hash, unpacks it and verifies every
// file as an invoice, on all cores.
func (e *Emulator) processBatch(in batchInput) batchResult {
	const partsFailed = "Błąd weryfikacji poprawności dostarczonych elementów paczki"
	for i, p := range in.parts {
		if sha256Base64(p) != in.partHashes[i] {
			return batchFailure(405, partsFailed, fmt.Sprintf("Skrót części '%d' nie zgadza się z zadeklarowanym.", i+1))
		}
	}
	archive, bad := decryptParts(in.key, in.iv, in.parts)
	if bad != 0 {
		return batchFailure(435, "Błąd odszyfrowania zaszyfrowanych części archiwum", fmt.Sprintf("Nie można odszyfrować części '%d'.", bad))
	}
	if int64(len(archive)) != in.fileSize {
		return batchFailure(405, partsFailed, fmt.Sprintf("Rozmiar paczki (%d B) nie zgadza się z zadeklarowanym (%d B).", len(archive), in.fileSize))
	}
	if sha256Base64(archive) != in.fileHash {
		return batchFailure(405, partsFailed, "Skrót paczki nie zgadza się z zadeklarowanym.")
	}
	return e.unpackAndVerify(archive, in)
}

// decryptParts decrypts each part on its own (AES-256-CBC from the session IV, PKCS#7) into one
// buffer holding the archive, releasing each ciphertext once decrypted. It returns the ordinal
// number of the first part that does not decrypt, or 0.
func decryptParts(key, iv []byte, parts [][]byte) (archive []byte, bad int) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, 1
	}
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	out := make([]byte, total)
	off := 0
	for i, p := range parts {
		if len(p) == 0 || len(p)%aes.BlockSize != 0 {
			return nil, i + 1
		}
		dst := out[off : off+len(p)]
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(dst, p)
		pad := int(dst[len(dst)-1])
		if pad == 0 || pad > aes.BlockSize || !bytes.Equal(dst[len(dst)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
			return nil, i + 1
		}
		off += len(p) - pad // the next part overwrites this one's padding
		parts[i] = nil
	}
	return out[:off], 0
}

// errTooManyInvoices stops unpacking an archive holding more invoices than the session limit.
var errTooManyInvoices = errors.New("too many invoices")

// unpackAndVerify reads the archive's files in order and verifies them on GOMAXPROCS workers.
// A broken archive is a 430 of the session, more files than Config.MaxInvoicesPerSession a 420;
// otherwise each file gets its own verdict.
func (e *Emulator) unpackAndVerify(archive []byte, in batchInput) batchResult {
	type job struct {
		i    int
		name string
		doc  []byte
		hash string
		size int64
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan job, workers)
	var (
		mu    sync.Mutex
		files []batchFile
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				f := e.verifyBatchFile(j.name, j.doc, j.hash, j.size, in)
				mu.Lock()
				for len(files) <= j.i {
					files = append(files, batchFile{})
				}
				files[j.i] = f
				mu.Unlock()
			}
		})
	}
	n := 0
	emit := func(name string, doc []byte, hash string, size int64) {
		jobs <- job{i: n, name: name, doc: doc, hash: hash, size: size}
		n++
	}
	var err error
	switch in.compression {
	case "TarGz":
		err = walkTarGz(archive, in.maxInvoices, emit)
	default:
		err = walkZip(archive, in.maxInvoices, emit)
	}
	close(jobs)
	wg.Wait()
	switch {
	case errors.Is(err, errTooManyInvoices):
		return batchFailure(420, "Przekroczony limit faktur w sesji", fmt.Sprintf("Paczka zawiera więcej niż %d faktur.", in.maxInvoices))
	case err != nil:
		return batchFailure(430, "Błąd dekompresji pierwotnego archiwum", err.Error())
	}
	return batchResult{files: files}
}

// archiveError is a decompression failure, described (in Polish) for the session status.
type archiveError struct{ detail string }

func (a *archiveError) Error() string { return a.detail }

func archiveErr(format string, args ...any) error {
	return &archiveError{detail: fmt.Sprintf(format, args...)}
}

// walkZip passes each file of a ZIP archive, in central directory order, to emit.
func walkZip(archive []byte, maxFiles int, emit func(name string, doc []byte, hash string, size int64)) error {
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		return archiveErr("Nie można odczytać archiwum ZIP: %v", err)
	}
	var files []*zip.File
	for _, f := range zr.File {
		if !f.FileInfo().IsDir() {
			files = append(files, f)
		}
	}
	if len(files) > maxFiles {
		return errTooManyInvoices
	}
	copyBuf := make([]byte, 32<<10)
	for _, f := range files {
		rc, err := f.Open()
		if err != nil {
			return archiveErr("Nie można rozpakować pliku %q: %v", f.Name, err)
		}
		doc, hash, size, err := readInvoiceFile(rc, int64(min(f.UncompressedSize64, 1<<62)), copyBuf)
		_ = rc.Close()
		if err != nil {
			return archiveErr("Nie można rozpakować pliku %q: %v", f.Name, err)
		}
		emit(f.Name, doc, hash, size)
	}
	return nil
}

// walkTarGz passes each regular file of a tar.gz archive, in order, to emit.
func walkTarGz(archive []byte, maxFiles int, emit func(name string, doc []byte, hash string, size int64)) error {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return archiveErr("Nie można odczytać archiwum tar.gz: %v", err)
	}
	tr := tar.NewReader(gz)
	copyBuf := make([]byte, 32<<10)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return archiveErr("Nie można odczytać archiwum tar.gz: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if n++; n > maxFiles {
			return errTooManyInvoices
		}
		doc, hash, size, err := readInvoiceFile(tr, h.Size, copyBuf)
		if err != nil {
			return archiveErr("Nie można rozpakować pliku %q: %v", h.Name, err)
		}
		emit(h.Name, doc, hash, size)
	}
}

// readInvoiceFile reads a file of the archive to its end through copyBuf, hashing all of it but
// keeping at most one byte more than the largest invoice allowed, so that an oversized (or
// maliciously compressed) file costs time but not memory. sizeHint is the size the archive
// declares for the file (0 if unknown).
func readInvoiceFile(r io.Reader, sizeHint int64, copyBuf []byte) (doc []byte, hash string, size int64, err error) {
	h := sha256.New()
	kept := &limitedBuffer{limit: maxInvoiceWithAttachmentSize + 1}
	kept.buf = make([]byte, 0, min(max(sizeHint, 0), int64(kept.limit)))
	size, err = io.CopyBuffer(io.MultiWriter(h, kept), r, copyBuf)
	if err != nil {
		return nil, "", 0, err
	}
	return kept.buf, base64.StdEncoding.EncodeToString(h.Sum(nil)), size, nil
}

// limitedBuffer keeps the first limit bytes written to it and discards the rest.
type limitedBuffer struct {
	buf   []byte
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.limit - len(l.buf); room > 0 {
		l.buf = append(l.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// verifyBatchFile verifies one file of the archive as KSeF verifies an invoice of a batch: the
// checks of an online invoice except the declared size and hash (a batch declares none), with
// attachments allowed.
func (e *Emulator) verifyBatchFile(name string, doc []byte, hash string, size int64, in batchInput) batchFile {
	f := batchFile{name: name, hash: hash}
	switch {
	case utf8.RuneCountInString(name) > maxInvoiceFileName:
		f.name = string([]rune(name)[:maxInvoiceFileName])
		f.v = rejected(430, fmt.Sprintf("Nazwa pliku faktury przekracza %d znaków.", maxInvoiceFileName))
	case size > maxInvoiceWithAttachmentSize:
		f.v = rejected(430, fmt.Sprintf("Rozmiar faktury (%d B) przekracza dozwolony limit %d B.", size, maxInvoiceWithAttachmentSize))
	default:
		f.v = e.verifyDocument(doc, in.context, in.now, true)
	}
	if f.v.outcome.Code == 0 {
		f.doc = doc
	}
	return f
}

// commitBatchLocked records the outcome of processing: a package failure, or one invoice per
// file, each decided as an online invoice is (faults, duplicates, KSeF number), in archive
// order. Invoices are received when the session opened (the moment KSeF takes for the offline
// rule of batches), accepted AcceptDelay after the close and final ProcessingDelay later.
func (e *Emulator) commitBatchLocked(s *session, res batchResult) {
	b := s.batch
	b.processing = false
	if res.failure.Code != 0 {
		b.failure = res.failure
		return
	}
	s.invoices = make([]*invoice, 0, len(res.files))
	for i := range res.files {
		f := &res.files[i]
		inv := &invoice{
			ref:      newReferenceNumber(s.closedAt, refInvoice),
			ordinal:  i + 1,
			session:  s,
			received: s.created,
			acceptAt: s.closedAt.Add(e.cfg.AcceptDelay),
			hash:     f.hash,
			fileName: f.name,
		}
		inv.finalAt = inv.acceptAt.Add(e.cfg.ProcessingDelay)
		if _, stuck := e.takeInvoiceFaultLocked(FaultStuckInvoices, s.context.Value); stuck {
			inv.stuck = true
		}
		if f.v.outcome.Code == 0 {
			if fault, forced := e.takeInvoiceFaultLocked(FaultRejectInvoices, s.context.Value); forced {
				f.v.outcome = statusInfo{Code: fault.Status, Description: invoiceStatusDescription(fault.Status), Details: fault.Details}
			}
		}
		e.decideLocked(inv, &f.v, b.offline, f.doc)
		s.invoices = append(s.invoices, inv)
		f.doc = nil
	}
}
