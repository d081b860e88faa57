//go:build cgo

package xsd

// This file holds the Go function that libxml2's entity loader calls back; cgo allows only
// declarations in the preamble of a file with //export, so the C code lives in libxml2.go.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
)

// xsdReadFile returns a malloc'ed copy of the schema file named by url (a schemaURL) from the
// fs.FS of the Compile call identified by handle h, storing its length in size, or NULL when the
// file cannot be read; the reason is kept for Compile's error.
//
//export xsdReadFile
func xsdReadFile(h C.uintptr_t, url *C.char, size *C.size_t) *C.char {
	st := cgo.Handle(h).Value().(*compileState)
	data, err := st.read(C.GoString(url))
	if err != nil {
		st.errs = append(st.errs, err)
		return nil
	}
	*size = C.size_t(len(data))
	return (*C.char)(C.CBytes(data))
}
