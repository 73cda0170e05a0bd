package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the config parser: it must never panic, every error must name the file,
// and whatever it accepts must still validate after a JSON round trip (what create stores and later reuses).
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"good", "bad"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*", "config.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, rootless := range []bool{false, true} {
		data, err := json.Marshal(Example(rootless))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	const name = "/bundle/config.json"
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parse(name, data)
		if err != nil {
			if s != nil {
				t.Fatalf("parse returned a spec with error %v", err)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, name) {
					t.Fatalf("error line %q does not start with the file name", line)
				}
			}
			return
		}
		if err := Validate(s); err != nil {
			t.Fatalf("accepted spec does not re-validate: %v", err)
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		if _, err := parse(name, again); err != nil {
			t.Fatalf("accepted spec fails after a JSON round trip: %v\n%s", err, again)
		}
	})
}
