package xsd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// maxMessages bounds the messages kept for one document; a badly broken document can produce one
// message per element.
const maxMessages = 100

// ErrClosed is returned by Validate after Close.
var ErrClosed = errors.New("xsd: schema closed")

// ValidationError reports a document that is not well-formed or does not conform to the schema.
type ValidationError struct {
	// Messages holds the parser's and validator's messages in document order, each formatted as
	// "line N: message", at most 100 of them.
	Messages []string
	// Omitted counts the messages dropped beyond the first 100.
	Omitted int
}

var _ error = (*ValidationError)(nil)

// Error joins the messages with "; ".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("xsd: document is not valid: ")
	if len(e.Messages) == 0 {
		b.WriteString("no details")
	}
	b.WriteString(strings.Join(e.Messages, "; "))
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more", e.Omitted)
	}
	return b.String()
}

// messageList collects messages up to maxMessages and counts the rest.
type messageList struct {
	msgs    []string
	omitted int
}

func (l *messageList) add(line int, msg string) {
	if len(l.msgs) >= maxMessages {
		l.omitted++
		return
	}
	l.msgs = append(l.msgs, fmt.Sprintf("line %d: %s", line, cleanMessage(msg)))
}

func (l *messageList) err() *ValidationError {
	return &ValidationError{Messages: l.msgs, Omitted: l.omitted}
}

// cleanMessage turns a libxml2 message into one trimmed line.
func cleanMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	return strings.Join(strings.Fields(msg), " ")
}

// doctypeMessage is the message for a document carrying a document type declaration.
const doctypeMessage = "document type declarations (<!DOCTYPE>) are not allowed"

// prologDoctype returns the 1-based line of a document type declaration in the prolog of doc,
// or 0 if the prolog (optional UTF-8 byte order mark, XML declaration, processing instructions,
// comments and white space) is followed by anything else. Documents in other encodings fall
// through to the parser, which reports a declaration after parsing.
func prologDoctype(doc []byte) int {
	i := 0
	if bytes.HasPrefix(doc, []byte("\xEF\xBB\xBF")) {
		i = 3
	}
	for i < len(doc) {
		rest := doc[i:]
		switch {
		case rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n':
			i++
		case bytes.HasPrefix(rest, []byte("<?")):
			end := bytes.Index(rest[2:], []byte("?>"))
			if end < 0 {
				return 0
			}
			i += 2 + end + 2
		case bytes.HasPrefix(rest, []byte("<!--")):
			end := bytes.Index(rest[4:], []byte("-->"))
			if end < 0 {
				return 0
			}
			i += 4 + end + 3
		case bytes.HasPrefix(rest, []byte("<!DOCTYPE")):
			return bytes.Count(doc[:i], []byte("\n")) + 1
		default:
			return 0
		}
	}
	return 0
}
