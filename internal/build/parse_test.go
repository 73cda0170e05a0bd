package build

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"unknown instruction", "FROM a\nRUN x\nFLY away\n", "Dockerfile:3: unknown instruction: FLY"},
		{"no FROM", "# just a comment\n", "Dockerfile:1: file with no instructions"},
		{"instruction before FROM", "RUN x\nFROM a\n", "Dockerfile:1:"},
		{"bad stage name", "FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage"},
		{"unterminated heredoc", "FROM a\nRUN <<EOF\necho\n", "Dockerfile:2: unterminated heredoc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDockerfile("Dockerfile", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	src := `ARG BASE=alpine
ARG TAG
FROM $BASE AS tools
RUN make tools
FROM busybox:${TAG:-1} AS unused
RUN exit 1
FROM tools AS build
COPY --from=0 /x /y
FROM scratch AS other
FROM scratch
COPY --from=build /y /y
COPY --from=other /z /z
`
	df, err := parseDockerfile("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		target    string
		buildArgs map[string]string
		order     []int
		steps     int
		wantErr   string
		meta      map[string]string
	}{
		{name: "last stage", order: []int{0, 2, 3, 4}, steps: 2 + 2 + 1 + 3, meta: map[string]string{"BASE": "alpine", "TARGETPLATFORM": "linux/arm64/v8", "TARGETARCH": "arm64", "BUILDOS": "linux", "BUILDPLATFORM": "linux/amd64"}},
		{name: "target by name", target: "build", order: []int{0, 2}, steps: 4},
		{name: "target any case", target: "TOOLS", order: []int{0}, steps: 2},
		{name: "target by index", target: "1", order: []int{1}, steps: 2},
		{name: "build arg overrides", target: "tools", buildArgs: map[string]string{"BASE": "debian", "TAG": "2"}, order: []int{0}, steps: 2, meta: map[string]string{"BASE": "debian", "TAG": "2"}},
		{name: "unknown target", target: "nope", wantErr: "--target nope: no such stage in Dockerfile (stages: tools, unused, build, other)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			used := map[string]bool{}
			meta, err := df.evalMetaArgs(tc.buildArgs, used, platformArgs{"linux", "arm64", "v8"}, platformArgs{"linux", "amd64", ""})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.meta {
				if got, _ := meta.Get(k); got != v {
					t.Errorf("meta ARG %s = %q, want %q", k, got, v)
				}
			}
			order, steps, err := df.plan(tc.target, meta)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(order, tc.order) || steps != tc.steps {
				t.Errorf("plan = %v, %d steps; want %v, %d", order, steps, tc.order, tc.steps)
			}
		})
	}
}

func TestShellArgs(t *testing.T) {
	parse := func(t *testing.T, line string) instructions.ShellDependantCmdLine {
		t.Helper()
		df, err := parseDockerfile("Dockerfile", []byte("FROM a\n"+line+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		switch c := df.stages[0].Commands[0].(type) {
		case *instructions.RunCommand:
			return c.ShellDependantCmdLine
		case *instructions.CmdCommand:
			return c.ShellDependantCmdLine
		}
		t.Fatalf("%q is not RUN or CMD", line)
		return instructions.ShellDependantCmdLine{}
	}
	cases := []struct {
		name, line string
		shell      []string
		want       []string
		pipes      map[string]string
	}{
		{"shell form", "RUN echo $HOME && ls", defaultShell, []string{"/bin/sh", "-c", "echo $HOME && ls"}, nil},
		{"exec form", `RUN ["echo", "a b"]`, defaultShell, []string{"echo", "a b"}, nil},
		{"custom shell", "CMD echo hi", []string{"/bin/bash", "-ec"}, []string{"/bin/bash", "-ec", "echo hi"}, nil},
		{"heredoc script", "RUN <<EOF\necho a\necho b\nEOF", defaultShell, []string{"/bin/sh", "-c", "echo a\necho b\n"}, nil},
		{"heredoc shebang", "RUN <<EOT\n#!/usr/bin/env python3\nprint(1)\nEOT", defaultShell, []string{"/dev/pipes/EOT"}, map[string]string{"EOT": "#!/usr/bin/env python3\nprint(1)\n"}},
		{"heredoc to a command", "RUN cat <<EOF > /f\nx\nEOF", defaultShell, []string{"/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"}, nil},
		{"chomped heredoc", "RUN <<-EOF\n\techo tab\nEOF", defaultShell, []string{"/bin/sh", "-c", "echo tab\n"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, pipes, err := shellArgs(parse(t, tc.line), tc.shell)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(pipes, tc.pipes) {
				t.Errorf("shellArgs = %q %q, want %q %q", got, pipes, tc.want, tc.pipes)
			}
		})
	}
}

func TestExpandPorts(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"80", []string{"80/tcp"}, false},
		{"53/UDP", []string{"53/udp"}, false},
		{"8000-8002/tcp", []string{"8000/tcp", "8001/tcp", "8002/tcp"}, false},
		{"0", nil, true},
		{"70000", nil, true},
		{"80/icmp", nil, true},
		{"9-3", nil, true},
		{"http", nil, true},
	}
	for _, tc := range cases {
		got, err := expandPorts(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("expandPorts(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestVarsAndExpansion(t *testing.T) {
	df, err := parseDockerfile("Dockerfile", []byte("FROM a\n"))
	if err != nil {
		t.Fatal(err)
	}
	args := newVars()
	args.Set("V", "arg")
	args.Set("ONLYARG", "a")
	env := args.overlay([]string{"V=env", "HOME=/root"})
	cases := []struct{ word, want string }{
		{"$V", "env"},
		{"${ONLYARG}-${HOME}", "a-/root"},
		{"${MISSING:-default}", "default"},
		{"${V:+set}", "set"},
		{`'$V'`, "$V"},
		{`\$V`, "$V"},
	}
	for _, tc := range cases {
		got, _, err := df.lex.ProcessWord(tc.word, env)
		if err != nil || got != tc.want {
			t.Errorf("expand %q = %q, %v; want %q", tc.word, got, err, tc.want)
		}
	}
	if got := env.sorted(); !reflect.DeepEqual(got, []string{"HOME=/root", "ONLYARG=a", "V=env"}) {
		t.Errorf("sorted = %v", got)
	}
}

func TestContextMatch(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.txt": "a", "b.txt": "b", "c.md": "c", "sub/d.txt": "d", "sub/deep/e.txt": "e",
		"skip.secret": "s", ".dockerignore": "*.secret\nsub/deep\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	tree, err := openContext(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		src     string
		want    []string
		wantErr string
	}{
		{"a.txt", []string{"a.txt"}, ""},
		{"/a.txt", []string{"a.txt"}, ""},
		{"*.txt", []string{"a.txt", "b.txt"}, ""},
		{"*/*.txt", []string{"sub/d.txt"}, ""},
		{"sub", []string{"sub"}, ""},
		{".", []string{""}, ""},
		{"../../a.txt", []string{"a.txt"}, ""},
		{"skip.secret", nil, "excluded by .dockerignore"},
		{"*.secret", nil, "no files match"},
		{"nothere", nil, "no such file or directory"},
		{"out/passwd", nil, "no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			got, err := tree.match(tc.src)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var rels []string
			for _, s := range got {
				rels = append(rels, s.rel)
			}
			if !reflect.DeepEqual(rels, tc.want) {
				t.Errorf("match = %q, want %q", rels, tc.want)
			}
		})
	}
	// The walk of the whole context leaves out what .dockerignore excludes; the digest covers
	// the contents.
	all, _ := tree.match(".")
	var walked []string
	tree.walk(all[0], func(rel, host string, fi os.FileInfo) error {
		walked = append(walked, rel)
		return nil
	})
	want := []string{"", ".dockerignore", "a.txt", "b.txt", "c.md", "out", "sub", "sub/d.txt"}
	if !reflect.DeepEqual(walked, want) {
		t.Errorf("walk = %q, want %q", walked, want)
	}
	d1, _ := tree.digest(all)
	os.WriteFile(filepath.Join(dir, "sub/deep/e.txt"), []byte("ignored change"), 0o644)
	d2, _ := tree.digest(all)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("changed"), 0o644)
	d3, _ := tree.digest(all)
	if d1 != d2 || d2 == d3 {
		t.Errorf("digests: ignored change %v, real change %v (want false, true)", d1 != d2, d2 != d3)
	}
}

func TestHashKey(t *testing.T) {
	if hashKey("ab", "c") == hashKey("a", "bc") {
		t.Error("hashKey does not separate its parts")
	}
	if hashKey("x") != hashKey("x") || len(hashKey("x")) != 64 {
		t.Error("hashKey is not a stable sha256 hex")
	}
}
