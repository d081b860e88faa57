package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// result is the outcome of one input file: one line of text or one JSON object on stdout.
type result struct {
	File string `json:"file"`
	// Accepted is true when the invoice is in KSeF: status 200 or, with --accept-duplicates,
	// a duplicate (440) of an invoice KSeF has already accepted.
	Accepted bool `json:"accepted"`
	// ReferenceNumber is the invoice's reference number in the session ("" if never sent).
	ReferenceNumber string `json:"referenceNumber"`
	// KSeFNumber is the number KSeF assigned; for an accepted duplicate, the original's.
	KSeFNumber string `json:"ksefNumber"`
	// StatusCode is KSeF's invoice status: final, or the last one seen (100, 150) when the
	// command stopped waiting; 0 if there is none.
	StatusCode        int      `json:"statusCode"`
	StatusDescription string   `json:"statusDescription"`
	StatusDetails     []string `json:"statusDetails,omitempty"`
	UPOPath           string   `json:"upoPath"` // the saved UPO; "" if none was saved

	SessionReferenceNumber         string `json:"sessionReferenceNumber,omitempty"`
	InvoiceNumber                  string `json:"invoiceNumber,omitempty"` // the seller's number, P_2
	OriginalKSeFNumber             string `json:"originalKsefNumber,omitempty"`
	OriginalSessionReferenceNumber string `json:"originalSessionReferenceNumber,omitempty"`
	// Error says what went wrong on this side: an invalid file, a failed send, an unknown final
	// status, a UPO that could not be saved.
	Error string `json:"error,omitempty"`
}

// text is the result as one line of text.
func (r *result) text() string {
	var b strings.Builder
	b.WriteString(r.File)
	b.WriteString(": ")
	switch {
	case r.Accepted:
		fmt.Fprintf(&b, "KSeF number %s", r.KSeFNumber)
		var notes []string
		if r.StatusCode == 440 {
			notes = append(notes, "duplicate of the invoice sent in session "+r.OriginalSessionReferenceNumber)
		}
		switch {
		case r.UPOPath != "":
			notes = append(notes, "UPO: "+r.UPOPath)
		case r.Error != "":
			notes = append(notes, r.Error)
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
		}
	case r.StatusCode >= 300:
		fmt.Fprintf(&b, "rejected %d %s", r.StatusCode, oneLine([]string{r.StatusDescription}))
		if len(r.StatusDetails) > 0 {
			b.WriteString(": ")
			b.WriteString(oneLine(r.StatusDetails))
		}
		if r.OriginalKSeFNumber != "" {
			fmt.Fprintf(&b, " (original KSeF number %s)", r.OriginalKSeFNumber)
		}
	case r.ReferenceNumber != "":
		fmt.Fprintf(&b, "status unknown (reference %s", r.ReferenceNumber)
		if r.StatusCode != 0 {
			fmt.Fprintf(&b, ", last status %d %s", r.StatusCode, oneLine([]string{r.StatusDescription}))
		}
		fmt.Fprintf(&b, "): %s", r.Error)
	default:
		fmt.Fprintf(&b, "not sent: %s", r.Error)
	}
	return b.String()
}

// reporter writes results to stdout, as text lines or JSON Lines.
type reporter struct {
	w    io.Writer
	json bool
	err  error // the first write error
}

func (r *reporter) report(res *result) {
	if r.err != nil {
		return
	}
	if r.json {
		enc := json.NewEncoder(r.w)
		enc.SetEscapeHTML(false)
		r.err = enc.Encode(res)
		return
	}
	_, r.err = fmt.Fprintln(r.w, res.text())
}

// writeFileAtomic writes data to dir/name through a temporary file in dir and a rename, so that
// the file is either absent or complete, and returns its path.
func writeFileAtomic(dir, name string, data []byte) (path string, err error) {
	path = filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
