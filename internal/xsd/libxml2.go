//go:build cgo

package xsd

/*
#cgo pkg-config: libxml-2.0
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlIO.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>
// Defined in libxml2_export.go.
extern char *xsdReadFile(uintptr_t h, char *url, size_t *size);

#if LIBXML_VERSION >= 21200
typedef const xmlError *xsd_error_ptr;
#else
typedef xmlErrorPtr xsd_error_ptr;
#endif

// Documents: no network, big line numbers; no DTD loading, no entity substitution.
#if LIBXML_VERSION >= 21300
#define XSD_DOC_OPTIONS (XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_NO_XXE)
#else
#define XSD_DOC_OPTIONS (XML_PARSE_NONET | XML_PARSE_BIG_LINES)
#endif

#define XSD_SCHEME "xsdfs:"

enum { XSD_MODE_NONE = 0, XSD_MODE_COMPILE = 1, XSD_MODE_VALIDATE = 2 };
enum { XSD_VALID = 0, XSD_INVALID = 1, XSD_DOCTYPE = 2, XSD_INTERNAL = -1 };

// xsd_msgs collects messages as records "level \t line \t file \t message \n"; tabs and line
// breaks inside file and message are replaced by spaces.
typedef struct {
	char  *buf;
	size_t len;
	size_t cap;
	int    limit;    // records kept at most
	int    count;    // records kept
	int    dropped;  // records over the limit
	int    errors;   // records of level XML_ERR_ERROR or worse, kept or not
	int    warnings; // non-zero: keep warnings too
} xsd_msgs;

// Per-thread state of the one cgo call in progress on this thread. A cgo call runs on one OS
// thread from start to end, and libxml2 calls the loader and the error handlers on that thread.
static _Thread_local int       xsd_mode;
static _Thread_local uintptr_t xsd_fs;
static _Thread_local xsd_msgs *xsd_cur;

static xmlExternalEntityLoader xsd_prev_loader;

// xsd_reserve makes room for n more bytes; it reports whether it could.
static int xsd_reserve(xsd_msgs *m, size_t n) {
	if (m->len + n <= m->cap) return 1;
	size_t cap = m->cap ? m->cap : 1024;
	while (m->len + n > cap) cap *= 2;
	char *buf = realloc(m->buf, cap);
	if (buf == NULL) return 0;
	m->buf = buf;
	m->cap = cap;
	return 1;
}

// xsd_put appends n bytes of s, which the caller has reserved, turning tabs and line breaks into
// spaces.
static void xsd_put(xsd_msgs *m, const char *s, size_t n) {
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		m->buf[m->len++] = (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
	}
}

static void xsd_msgs_add(xsd_msgs *m, int level, int line, const char *file, const char *msg) {
	if (m == NULL) return;
	if (level >= XML_ERR_ERROR) m->errors++;
	else if (!m->warnings) return;
	char head[48];
	int hn = snprintf(head, sizeof head, "%d\t%d\t", level, line);
	size_t fl = file ? strlen(file) : 0;
	size_t ml = msg ? strlen(msg) : 0;
	if (m->count >= m->limit || hn < 0 || !xsd_reserve(m, (size_t)hn + fl + ml + 2)) {
		m->dropped++;
		return;
	}
	memcpy(m->buf + m->len, head, (size_t)hn);
	m->len += (size_t)hn;
	xsd_put(m, file, fl);
	m->buf[m->len++] = '\t';
	xsd_put(m, msg, ml);
	m->buf[m->len++] = '\n';
	m->count++;
}

static void xsd_on_error(void *ctx, xsd_error_ptr err) {
	if (err == NULL) return;
	xsd_msgs_add((xsd_msgs *)ctx, err->level, err->line, err->file, err->message);
}

static void xsd_silent(void *ctx, const char *msg, ...) {
	(void)ctx;
	(void)msg;
}

static xmlParserInputPtr xsd_entity_loader(const char *URL, const char *ID, xmlParserCtxtPtr ctxt) {
	switch (xsd_mode) {
	case XSD_MODE_VALIDATE:
		xsd_msgs_add(xsd_cur, XML_ERR_ERROR, 0, NULL, "external resources are never loaded for a document");
		return NULL;
	case XSD_MODE_COMPILE: {
		if (URL == NULL || strncmp(URL, XSD_SCHEME, strlen(XSD_SCHEME)) != 0) {
			char msg[512];
			snprintf(msg, sizeof msg, "refusing to load %.400s: a schema may only include or import files of its fs.FS by relative path", URL ? URL : "(null)");
			xsd_msgs_add(xsd_cur, XML_ERR_ERROR, 0, NULL, msg);
			return NULL;
		}
		size_t n = 0;
		char *data = xsdReadFile(xsd_fs, (char *)URL, &n);
		if (data == NULL) return NULL;
		xmlParserInputBufferPtr buf = xmlParserInputBufferCreateMem(data, (int)n, XML_CHAR_ENCODING_NONE);
		free(data);
		if (buf == NULL) return NULL;
		xmlParserInputPtr in = xmlNewIOInputStream(ctxt, buf, XML_CHAR_ENCODING_NONE);
		if (in == NULL) {
			xmlFreeParserInputBuffer(buf);
			return NULL;
		}
		in->filename = (const char *)xmlStrdup((const xmlChar *)URL);
		return in;
	}
	default:
		if (URL != NULL && (strncasecmp(URL, "http://", 7) == 0 || strncasecmp(URL, "ftp://", 6) == 0)) {
			return xmlNoNetExternalEntityLoader(URL, ID, ctxt); // reports and refuses
		}
		return xsd_prev_loader(URL, ID, ctxt);
	}
}

static void xsd_init(void) {
	xmlInitParser();
	xsd_prev_loader = xmlGetExternalEntityLoader();
	xmlSetExternalEntityLoader(xsd_entity_loader);
}

typedef struct {
	int                    mode;
	uintptr_t              fs;
	xsd_msgs              *cur;
	xmlStructuredErrorFunc serror;
	void                  *sctx;
	xmlGenericErrorFunc    gerror;
	void                  *gctx;
} xsd_saved;

static void xsd_enter(xsd_saved *s, int mode, uintptr_t fs, xsd_msgs *m) {
	s->mode = xsd_mode;
	s->fs = xsd_fs;
	s->cur = xsd_cur;
	s->serror = xmlStructuredError;
	s->sctx = xmlStructuredErrorContext;
	s->gerror = xmlGenericError;
	s->gctx = xmlGenericErrorContext;
	xsd_mode = mode;
	xsd_fs = fs;
	xsd_cur = m;
	xmlSetStructuredErrorFunc(m, xsd_on_error);
	xmlSetGenericErrorFunc(NULL, xsd_silent);
}

static void xsd_leave(xsd_saved *s) {
	xmlSetStructuredErrorFunc(s->sctx, s->serror);
	xmlSetGenericErrorFunc(s->gctx, s->gerror);
	xsd_mode = s->mode;
	xsd_fs = s->fs;
	xsd_cur = s->cur;
}

static xmlSchemaPtr xsd_compile(const char *url, uintptr_t fs, xsd_msgs *m) {
	xsd_saved saved;
	xsd_enter(&saved, XSD_MODE_COMPILE, fs, m);
	xmlSchemaPtr schema = NULL;
	xmlSchemaParserCtxtPtr pctxt = xmlSchemaNewParserCtxt(url);
	if (pctxt != NULL) {
		xmlSchemaSetParserStructuredErrors(pctxt, xsd_on_error, m);
		schema = xmlSchemaParse(pctxt);
		xmlSchemaFreeParserCtxt(pctxt);
	}
	xsd_leave(&saved);
	return schema;
}

static int xsd_validate(xmlSchemaPtr schema, const char *buf, int len, xsd_msgs *m) {
	xsd_saved saved;
	xsd_enter(&saved, XSD_MODE_VALIDATE, 0, m);
	int rc = XSD_INVALID;
	xmlDocPtr doc = xmlReadMemory(buf, len, NULL, NULL, XSD_DOC_OPTIONS);
	if (doc == NULL) goto out;
	if (doc->intSubset != NULL || doc->extSubset != NULL) {
		rc = XSD_DOCTYPE;
		goto out;
	}
	if (m->errors > 0) goto out; // e.g. namespace errors, which leave a document behind
	xmlSchemaValidCtxtPtr vctxt = xmlSchemaNewValidCtxt(schema);
	if (vctxt == NULL) {
		rc = XSD_INTERNAL;
		goto out;
	}
	xmlSchemaSetValidStructuredErrors(vctxt, xsd_on_error, m);
	int r = xmlSchemaValidateDoc(vctxt, doc);
	xmlSchemaFreeValidCtxt(vctxt);
	rc = r == 0 ? XSD_VALID : (r > 0 ? XSD_INVALID : XSD_INTERNAL);
out:
	if (doc != NULL) xmlFreeDoc(doc);
	xsd_leave(&saved);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"path"
	"runtime"
	"runtime/cgo"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// maxSchemaFile bounds the size of one schema file read from the fs.FS.
const maxSchemaFile = 64 << 20

var initOnce sync.Once

// Schema is a compiled XML Schema. It is safe for concurrent use; Close frees it.
type Schema struct {
	mu      sync.RWMutex
	ptr     C.xmlSchemaPtr // nil after Close
	cleanup runtime.Cleanup
}

// Compile reads the schema at path in fsys, together with every schema it includes or imports
// by relative schemaLocation (resolved inside fsys), and compiles it. It reads nothing outside
// fsys and never uses the network. The error lists libxml2's messages, with file and line.
func Compile(fsys fs.FS, path string) (*Schema, error) {
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("xsd: compile %q: invalid fs.FS path", path)
	}
	initOnce.Do(func() { C.xsd_init() })

	st := &compileState{fsys: fsys}
	h := cgo.NewHandle(st)
	defer h.Delete()
	curl := C.CString(schemaURL(path))
	defer C.free(unsafe.Pointer(curl))

	msgs := C.xsd_msgs{limit: maxMessages, warnings: 1}
	ptr := C.xsd_compile(curl, C.uintptr_t(h), &msgs)
	recs := takeRecords(&msgs)
	if ptr == nil {
		var b strings.Builder
		for i, r := range recs {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(r.compileString())
		}
		if b.Len() == 0 {
			b.WriteString("libxml2 gave no reason")
		}
		if len(st.errs) > 0 {
			return nil, fmt.Errorf("xsd: compile %s: %w (%s)", path, st.errs[0], b.String())
		}
		return nil, fmt.Errorf("xsd: compile %s: %s", path, b.String())
	}
	s := &Schema{ptr: ptr}
	s.cleanup = runtime.AddCleanup(s, func(p C.xmlSchemaPtr) { C.xmlSchemaFree(p) }, ptr)
	return s, nil
}

// Validate checks that doc is a well-formed XML document conforming to the schema. It returns nil,
// a *ValidationError listing what is wrong, or another error if the validator itself failed.
// Documents with a document type declaration are rejected; nothing outside doc is ever read.
func (s *Schema) Validate(doc []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return ErrClosed
	}
	if len(doc) == 0 {
		return &ValidationError{Messages: []string{"line 1: Document is empty"}}
	}
	if len(doc) > math.MaxInt32 {
		return fmt.Errorf("xsd: document of %d bytes is too large", len(doc))
	}
	if line := prologDoctype(doc); line > 0 {
		var list messageList
		list.add(line, doctypeMessage)
		return list.err()
	}
	msgs := C.xsd_msgs{limit: maxMessages}
	rc := C.xsd_validate(s.ptr, (*C.char)(unsafe.Pointer(&doc[0])), C.int(len(doc)), &msgs)
	recs := takeRecords(&msgs)
	var list messageList
	list.omitted = int(msgs.dropped)
	switch rc {
	case C.XSD_VALID:
		return nil
	case C.XSD_DOCTYPE: // only in documents prologDoctype cannot read, such as UTF-16 ones
		list = messageList{}
		list.add(1, doctypeMessage)
		return list.err()
	case C.XSD_INVALID:
		for _, r := range recs {
			list.add(r.line, r.msg)
		}
		if len(list.msgs) == 0 {
			list.add(1, "document is not valid")
		}
		return list.err()
	default:
		var b strings.Builder
		for _, r := range recs {
			b.WriteString("; ")
			b.WriteString(r.msg)
		}
		return fmt.Errorf("xsd: internal validator error%s", b.String())
	}
}

// Close frees the compiled schema. It waits for running validations; later calls of Validate
// return ErrClosed. Close is idempotent.
func (s *Schema) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return
	}
	s.cleanup.Stop()
	C.xmlSchemaFree(s.ptr)
	s.ptr = nil
}

// record is one libxml2 message.
type record struct {
	level int
	line  int
	file  string
	msg   string
}

func (r record) compileString() string {
	var b strings.Builder
	if r.level < C.XML_ERR_ERROR {
		b.WriteString("warning: ")
	}
	if f := displayName(r.file); f != "" {
		b.WriteString(f)
		if r.line > 0 {
			b.WriteString(":" + strconv.Itoa(r.line))
		}
		b.WriteString(": ")
	} else if r.line > 0 {
		b.WriteString("line " + strconv.Itoa(r.line) + ": ")
	}
	b.WriteString(strings.ReplaceAll(cleanMessage(r.msg), schemeName+"///", ""))
	return b.String()
}

// takeRecords decodes and frees the messages collected by C.
func takeRecords(m *C.xsd_msgs) []record {
	if m.buf == nil {
		return nil
	}
	raw := C.GoStringN(m.buf, C.int(m.len))
	C.free(unsafe.Pointer(m.buf))
	m.buf, m.len, m.cap = nil, 0, 0
	var recs []record
	for line := range strings.Lines(raw) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "\t", 4)
		if len(f) != 4 {
			continue
		}
		level, _ := strconv.Atoi(f[0])
		ln, _ := strconv.Atoi(f[1])
		recs = append(recs, record{level: level, line: ln, file: f[2], msg: f[3]})
	}
	return recs
}

// schemeName is the URI scheme under which the files of the fs.FS being compiled are served.
const schemeName = "xsdfs:"

// schemaURL turns an fs.FS path into an absolute URL that libxml2 resolves relative
// schemaLocation values against.
func schemaURL(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return schemeName + "///" + strings.Join(segs, "/")
}

// fsPath is the inverse of schemaURL.
func fsPath(u string) (string, error) {
	rest, ok := strings.CutPrefix(u, schemeName)
	if !ok {
		return "", fmt.Errorf("%q is not a schema file URL", u)
	}
	p, err := url.PathUnescape(strings.TrimLeft(rest, "/"))
	if err != nil {
		return "", fmt.Errorf("schema file URL %q: %w", u, err)
	}
	p = path.Clean(p)
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("schema file URL %q leaves the fs.FS", u)
	}
	return p, nil
}

// displayName shows a schema file URL as its fs.FS path.
func displayName(file string) string {
	if p, err := fsPath(file); err == nil {
		return p
	}
	return file
}

// compileState is what the file loader callback sees during one Compile.
type compileState struct {
	fsys fs.FS
	errs []error
}

func (st *compileState) read(u string) ([]byte, error) {
	p, err := fsPath(u)
	if err != nil {
		return nil, err
	}
	info, err := fs.Stat(st.fsys, p)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxSchemaFile {
		return nil, fmt.Errorf("schema file %s: %d bytes is too large", p, info.Size())
	}
	data, err := fs.ReadFile(st.fsys, p)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("schema file %s is empty", p)
	}
	return data, nil
}
