package spec

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeBundle(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   string // the error after the "<bundle>/config.json" prefix
		is     any    // an error type the chain must contain, or nil
	}{
		{
			name:   "syntax error points at the bad byte",
			config: "{\n  \"ociVersion\": \"1.3.0\",\n  \"root\": {\"path\": \"r\"},\n}\n",
			want:   ":4:1: invalid character '}' looking for beginning of object key string",
			is:     new(*json.SyntaxError),
		},
		{
			name:   "missing comma",
			config: "{\"ociVersion\": \"1.3.0\"\n \"root\": {}}",
			want:   ":2:2: invalid character '\"' after object key:value pair",
			is:     new(*json.SyntaxError),
		},
		{
			name:   "end of input",
			config: "{\"ociVersion\": ",
			want:   ":1:16: unexpected end of JSON input",
			is:     new(*json.SyntaxError),
		},
		{
			name:   "type error names the field",
			config: "{\"ociVersion\": \"1.3.0\", \"root\": {\"path\": \"r\"},\n \"process\": {\"args\": \"sh\"}}",
			want:   ":2:22: process.args: want array, got string",
			is:     new(*json.UnmarshalTypeError),
		},
		{
			name:   "type error in nested struct",
			config: "{\"ociVersion\": \"1.3.0\", \"root\": {\"path\": \"r\"}, \"linux\": {\"namespaces\": [{\"type\": 1}]}}",
			want:   ":1:82: linux.namespaces.type: want string, got number",
			is:     new(*json.UnmarshalTypeError),
		},
		{
			name:   "object where a bool is wanted",
			config: "{\"ociVersion\": \"1.3.0\", \"root\": {\"path\": \"r\", \"readonly\": {}}}",
			want:   ":1:59: root.readonly: want boolean, got object",
			is:     new(*json.UnmarshalTypeError),
		},
		{
			name:   "validation errors are prefixed one per line",
			config: `{"ociVersion": "1.3.0", "root": {"path": "r"}, "process": {"args": [], "cwd": "x"}}`,
			want:   ": process.args: must not be empty\n<file>: process.cwd: \"x\" is not absolute",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeBundle(t, tt.config)
			file := filepath.Join(dir, "config.json")
			s, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted %q: %+v", tt.config, s)
			}
			want := file + strings.ReplaceAll(tt.want, "<file>", file)
			if err.Error() != want {
				t.Errorf("error\n got: %s\nwant: %s", err, want)
			}
			if tt.is != nil && !errors.As(err, tt.is) {
				t.Errorf("error %v does not wrap %T", err, tt.is)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of an empty bundle: %v, want fs.ErrNotExist", err)
	}
	if want := filepath.Join(dir, "config.json") + ": no such file or directory"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestLoadIgnoresUnknownFields(t *testing.T) {
	dir := writeBundle(t, `{"ociVersion": "1.3.0", "root": {"path": "r", "future": 1}, "vendorExtension": [1, 2]}`)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != "r" {
		t.Errorf("root.path = %q, want r", s.Root.Path)
	}
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	tests := []struct {
		off       int64
		line, col int
	}{
		{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {5, 2, 3}, {6, 3, 1}, {7, 4, 1}, {8, 4, 2},
		{9, 4, 3}, {100, 4, 3}, {-1, 1, 1},
	}
	for _, tt := range tests {
		line, col := lineCol(data, tt.off)
		if line != tt.line || col != tt.col {
			t.Errorf("lineCol(%d) = %d:%d, want %d:%d", tt.off, line, col, tt.line, tt.col)
		}
	}
}
