// Package spec owns the container configuration: it loads and validates a bundle's config.json (errors name the
// file, the JSON position or the field) and builds the example configs that `knast spec` writes. The
// runtime-spec types (specs-go) are used directly; this package defines no parallel structs.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// configFile is the name of the configuration file inside a bundle.
const configFile = "config.json"

// Load reads bundle/config.json, decodes it and validates it. Every error starts with the file path: JSON
// syntax errors carry line:column, type errors the field path and validation errors "field.path: problem".
func Load(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, configFile)
	data, err := os.ReadFile(path)
	if err != nil {
		// Keep the "path: problem" shape of every other error; the PathError would repeat the path.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return parse(path, data)
}

// parse decodes and validates data read from name. It is Load without the file system, for tests and fuzzing.
func parse(name string, data []byte) (*specs.Spec, error) {
	var s specs.Spec
	// Unknown properties are ignored, not refused: the runtime-spec requires runtimes to tolerate them.
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, decodeError(name, data, err)
	}
	if err := Validate(&s); err != nil {
		return nil, prefixErrors(name, err)
	}
	return &s, nil
}

// decodeError turns an encoding/json error into "name:line:col: message".
func decodeError(name string, data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off := syn.Offset
		// Offset counts the bytes read including the offending one; point at that byte, except at end of
		// input where there is none.
		if off > 0 && off <= int64(len(data)) && syn.Error() != "unexpected end of JSON input" {
			off--
		}
		line, col := lineCol(data, off)
		return fmt.Errorf("%s:%d:%d: %w", name, line, col, err)
	case errors.As(err, &typ):
		line, col := lineCol(data, valueStart(data, typ.Offset))
		msg := fmt.Sprintf("want %s, got %s", jsonKind(typ.Type), typ.Value)
		if typ.Field != "" {
			msg = typ.Field + ": " + msg
		}
		return &decodeErr{msg: fmt.Sprintf("%s:%d:%d: %s", name, line, col, msg), err: err}
	default:
		return fmt.Errorf("%s: %w", name, err)
	}
}

// decodeErr keeps the json error reachable with errors.As while printing our own wording.
type decodeErr struct {
	msg string
	err error
}

func (e *decodeErr) Error() string { return e.msg }
func (e *decodeErr) Unwrap() error { return e.err }

// valueStart finds where the JSON value that ends at end (a json.UnmarshalTypeError offset: after a literal,
// or after the '[' or '{' opening a composite) begins, so positions point at the offending value.
func valueStart(data []byte, end int64) int64 {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		before := dec.InputOffset()
		if _, err := dec.Token(); err != nil {
			break
		}
		if dec.InputOffset() != end {
			continue
		}
		// Token skips the separators before a value; skip them too.
		for before < end && strings.IndexByte(" \t\r\n:,", data[before]) >= 0 {
			before++
		}
		return before
	}
	if end > 0 {
		return end - 1
	}
	return 0
}

// lineCol converts a byte offset into a 1-based line and column (columns count bytes).
func lineCol(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// jsonKind names the JSON value a Go type decodes from, so messages speak JSON, not Go.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("integer (%s)", t.Kind())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return fmt.Sprintf("non-negative integer (%s)", t.Kind())
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	default:
		return t.String()
	}
}

// prefixErrors puts name in front of every joined validation error, keeping each one unwrappable.
func prefixErrors(name string, err error) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Errorf("%s: %w", name, e))
	}
	return errors.Join(out...)
}
