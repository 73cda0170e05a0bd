package freebsd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultPath is searched when the process sets no PATH, as execvp does.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LookPath finds process.args[0] in the process's PATH, as execvp would; the init calls it inside the
// jail, before dropping privileges.
func LookPath(p *specs.Process) (string, error) {
	if p == nil || len(p.Args) == 0 {
		return "", fmt.Errorf("process.args: must not be empty")
	}
	name := p.Args[0]
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("process.args[0]: %w", err)
		}
		return name, nil
	}
	path := defaultPath
	for _, kv := range p.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		f := filepath.Join(dir, name)
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("process.args[0]: %q: executable file not found in $PATH", name)
}
