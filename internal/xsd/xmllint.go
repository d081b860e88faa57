//go:build !cgo

package xsd

// The fallback for builds without cgo: one xmllint process per document. See the package
// documentation for what it costs.

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// xmllint exit codes (xmllint.c, xmllintReturnCode).
const (
	xmllintParseError  = 1
	xmllintInvalid     = 3
	xmllintSchemaError = 5
)

// Schema is a schema copied to a temporary directory, checked by xmllint. It is safe for
// concurrent use; Close removes the directory.
type Schema struct {
	mu      sync.RWMutex
	dir     string // temporary directory; "" after Close
	schema  string // the schema's file inside dir
	xmllint string
	cleanup runtime.Cleanup
}

// Compile copies the schema at path in fsys, and every schema it includes or imports by relative
// schemaLocation, into a temporary directory and checks with xmllint that it compiles. A
// schemaLocation that is absolute or names another URI scheme is refused, so the schema never
// reaches the network or the real file system. It needs xmllint on PATH.
func Compile(fsys fs.FS, path string) (*Schema, error) {
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("xsd: compile %q: invalid fs.FS path", path)
	}
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		return nil, fmt.Errorf("xsd: compile %s: without cgo the package runs xmllint: %w", path, err)
	}
	files, err := schemaClosure(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("xsd: compile %s: %w", path, err)
	}
	dir, err := os.MkdirTemp("", "xsd-")
	if err != nil {
		return nil, fmt.Errorf("xsd: compile %s: %w", path, err)
	}
	for name, data := range files {
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("xsd: compile %s: copy %s: %w", path, name, err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("xsd: compile %s: copy %s: %w", path, name, err)
		}
	}
	s := &Schema{dir: dir, schema: filepath.Join(dir, filepath.FromSlash(path)), xmllint: bin}

	// xmllint compiles the schema before it looks at the document; exit code 5 says it could not.
	code, stderr, err := s.run([]byte("<probe/>"))
	if err != nil || code == xmllintSchemaError {
		os.RemoveAll(dir)
		if err != nil {
			return nil, fmt.Errorf("xsd: compile %s: %w", path, err)
		}
		return nil, fmt.Errorf("xsd: compile %s: %s", path, compileMessages(stderr, dir))
	}
	s.cleanup = runtime.AddCleanup(s, func(dir string) { os.RemoveAll(dir) }, dir)
	return s, nil
}

// Validate checks that doc is a well-formed XML document conforming to the schema. It returns nil,
// a *ValidationError listing what is wrong, or another error if xmllint could not run.
// Documents with a document type declaration are rejected.
func (s *Schema) Validate(doc []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.dir == "" {
		return ErrClosed
	}
	if len(doc) == 0 {
		return &ValidationError{Messages: []string{"line 1: Document is empty"}}
	}
	if line := prologDoctype(doc); line > 0 {
		var list messageList
		list.add(line, doctypeMessage)
		return list.err()
	}
	code, stderr, err := s.run(doc)
	if err != nil {
		return fmt.Errorf("xsd: validate: %w", err)
	}
	switch code {
	case 0:
		return nil
	case xmllintParseError, xmllintInvalid:
		list := documentMessages(stderr)
		if len(list.msgs) == 0 {
			list.add(1, "document is not valid")
		}
		return list.err()
	default:
		return fmt.Errorf("xsd: validate: xmllint exit status %d: %s", code, compileMessages(stderr, s.dir))
	}
}

// Close removes the temporary copy of the schema. It waits for running validations; later calls
// of Validate return ErrClosed. Close is idempotent.
func (s *Schema) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return
	}
	s.cleanup.Stop()
	os.RemoveAll(s.dir)
	s.dir = ""
}

// run feeds doc to xmllint on standard input and returns its exit code and standard error.
func (s *Schema) run(doc []byte) (int, []byte, error) {
	cmd := exec.Command(s.xmllint, "--noout", "--nonet", "--schema", s.schema, "-")
	cmd.Stdin = bytes.NewReader(doc)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.Bytes(), nil
	case errors.As(err, &exit) && exit.Exited():
		return exit.ExitCode(), stderr.Bytes(), nil
	default:
		return 0, nil, fmt.Errorf("run xmllint: %w", err)
	}
}

// messageLine matches one xmllint message about the document read from standard input, e.g.
// "-:12: element P_2: Schemas validity error : Element '...': This element is not expected."
var messageLine = regexp.MustCompile(`^-:(\d+): (?:element [^:]*: )?([A-Za-z ]+?) (error|warning) : (.*)$`)

// documentMessages extracts the errors from xmllint's standard error. A parser error is followed
// by two lines quoting the document, which are skipped.
func documentMessages(stderr []byte) messageList {
	var list messageList
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(nil, 1<<20)
	skip := 0
	for sc.Scan() {
		if skip > 0 {
			skip--
			continue
		}
		m := messageLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if m[2] != "Schemas validity" {
			skip = 2
		}
		if m[3] != "error" {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		list.add(line, m[4])
	}
	return list
}

// compileMessages keeps the error lines of xmllint's standard error, naming files by their fs.FS
// paths.
func compileMessages(stderr []byte, dir string) string {
	var msgs []string
	for line := range strings.Lines(string(stderr)) {
		if !strings.Contains(line, " error : ") && !strings.Contains(line, "failed to compile") {
			continue
		}
		line = strings.ReplaceAll(line, dir+string(filepath.Separator), "")
		msgs = append(msgs, cleanMessage(line))
	}
	if len(msgs) == 0 {
		return "xmllint gave no reason"
	}
	return strings.Join(msgs, "; ")
}

// xsdNamespace is the namespace of XML Schema's own elements.
const xsdNamespace = "http://www.w3.org/2001/XMLSchema"

// schemaClosure reads the schema at name and, transitively, every schema it includes, imports,
// redefines or overrides, keyed by fs.FS path.
func schemaClosure(fsys fs.FS, name string) (map[string][]byte, error) {
	files := make(map[string][]byte)
	queue := []string{name}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if _, ok := files[cur]; ok {
			continue
		}
		data, err := fs.ReadFile(fsys, cur)
		if err != nil {
			return nil, err
		}
		files[cur] = data
		locs, err := schemaLocations(data)
		if err != nil {
			continue // xmllint reports the syntax error with its line
		}
		for _, loc := range locs {
			u, err := url.Parse(loc)
			if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/") {
				return nil, fmt.Errorf("%s: refusing to load %s: a schema may only include or import files of its fs.FS by relative path", cur, loc)
			}
			next := path.Join(path.Dir(cur), u.Path)
			if !fs.ValidPath(next) {
				return nil, fmt.Errorf("%s: refusing to load %s: it leaves the fs.FS", cur, loc)
			}
			queue = append(queue, next)
		}
	}
	return files, nil
}

// schemaLocations returns the schemaLocation attributes of the include, import, redefine and
// override elements of a schema document.
func schemaLocations(data []byte) ([]string, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var locs []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return locs, nil
		}
		if err != nil {
			return locs, err
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != xsdNamespace {
			continue
		}
		switch se.Name.Local {
		case "include", "import", "redefine", "override":
		default:
			continue
		}
		for _, a := range se.Attr {
			if a.Name.Local == "schemaLocation" && a.Name.Space == "" && a.Value != "" {
				locs = append(locs, a.Value)
			}
		}
	}
}
