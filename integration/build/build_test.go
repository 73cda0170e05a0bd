//go:build linux

package buildtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The Dockerfiles built by knast and, where both understand them, by buildah bud: the file trees
// (types, modes, owners, contents, link targets) and the configs must match.
func TestBuildMatchesBuildah(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Fatal("buildah is not installed (apt-get install -y buildah): the comparison needs it")
	}
	cases := []struct {
		name  string
		files map[string]string
		args  []string
		check func(t *testing.T, img image)
	}{
		{
			name: "multi-stage",
			files: map[string]string{"Dockerfile": `
FROM ` + baseImage + ` AS builder
RUN mkdir -p /out/bin && echo compiled > /out/bin/app && chmod 755 /out/bin/app && ln -s app /out/bin/alias
FROM ` + baseImage + ` AS second
RUN echo second > /second.txt
FROM ` + baseImage + `
COPY --from=builder /out/bin /usr/local/bin/
COPY --from=1 /second.txt /from-index.txt
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--help"]
`},
			check: func(t *testing.T, img image) {
				wantFile(t, img.rootfs, "usr/local/bin/app", "compiled\n")
				wantFile(t, img.rootfs, "from-index.txt", "second\n")
				if l, _ := os.Readlink(filepath.Join(img.rootfs, "usr/local/bin/alias")); l != "app" {
					t.Errorf("alias -> %q, want app", l)
				}
			},
		},
		{
			name: "arg-env-expansion",
			files: map[string]string{"Dockerfile": `
ARG BASE=` + baseImage + `
ARG UNUSED=x
FROM $BASE
ARG VERSION=1.0
ARG FLAVOR
ENV APP_HOME=/srv/app APP_VERSION=${VERSION} FLAVOR=${FLAVOR:-plain}
ENV GREETING="hello $APP_VERSION"
WORKDIR $APP_HOME
RUN echo "$GREETING $FLAVOR $VERSION" > version.txt
LABEL version=$VERSION home="${APP_HOME}"
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
USER 1000:1000
`, "x": ""},
			args: []string{"--build-arg", "VERSION=2.5"},
			check: func(t *testing.T, img image) {
				wantFile(t, img.rootfs, "srv/app/version.txt", "hello 2.5 plain 2.5\n")
				if img.cfg.Config.WorkingDir != "/srv/app" || img.cfg.Config.Labels["version"] != "2.5" {
					t.Errorf("config: workdir %q labels %v", img.cfg.Config.WorkingDir, img.cfg.Config.Labels)
				}
			},
		},
		{
			name: "copy-chown-chmod",
			files: map[string]string{
				"Dockerfile": `
FROM ` + baseImage + `
RUN echo 'app:x:1234:2345:app:/home/app:/bin/sh' >> /etc/passwd && echo 'appgrp:x:2345:' >> /etc/group && echo 'other:x:3456:' >> /etc/group
COPY --chown=app:other conf.txt /etc/app/conf.txt
COPY --chown=1000:1000 --chmod=0750 bin/ /opt/bin/
COPY --chown=app dir /home/app/dir/
COPY --chmod=0600 conf.txt /secret
COPY *.md /docs/
`,
				"conf.txt": "conf\n", "bin/tool": "#!/bin/sh\n", "bin/sub/helper": "h\n",
				"dir/a": "a\n", "dir/nested/b": "b\n", "one.md": "1\n", "two.md": "2\n",
			},
			check: func(t *testing.T, img image) {
				wantOwner(t, img.rootfs, "etc/app/conf.txt", 1234, 3456)
				wantOwner(t, img.rootfs, "home/app/dir/nested/b", 1234, 2345)
				wantOwner(t, img.rootfs, "opt/bin/tool", 1000, 1000)
				wantMode(t, img.rootfs, "opt/bin/tool", 0o750)
				wantMode(t, img.rootfs, "secret", 0o600)
				wantFile(t, img.rootfs, "docs/two.md", "2\n")
			},
		},
		{
			name: "deletions",
			files: map[string]string{"Dockerfile": `
FROM ` + baseImage + `
RUN echo temp > /tmp/made && mkdir -p /var/lib/thing && echo x > /var/lib/thing/f
RUN rm /tmp/made /etc/motd && rm -rf /var/lib/thing
RUN rm -rf /opt/data && mkdir /opt/data && echo fresh > /opt/data/new
`},
			check: func(t *testing.T, img image) {
				for _, gone := range []string{"tmp/made", "etc/motd", "var/lib/thing", "opt/data/a", "opt/data/sub"} {
					if _, err := os.Lstat(filepath.Join(img.rootfs, gone)); err == nil {
						t.Errorf("/%s survived its deletion", gone)
					}
				}
				wantFile(t, img.rootfs, "opt/data/new", "fresh\n")
			},
		},
		{
			name: "workdir-through-symlink",
			files: map[string]string{
				"Dockerfile": `
FROM ` + baseImage + `
RUN mkdir -p /real && ln -s /real /link
WORKDIR /link/sub
RUN pwd > where.txt
COPY file.txt .
`,
				"file.txt": "f\n",
			},
			check: func(t *testing.T, img image) {
				wantFile(t, img.rootfs, "real/sub/file.txt", "f\n")
				wantFile(t, img.rootfs, "real/sub/where.txt", "/real/sub\n")
			},
		},
		{
			name: "dockerignore",
			files: map[string]string{
				"Dockerfile":    "FROM " + baseImage + "\nCOPY . /ctx/\n",
				".dockerignore": "*.secret\ntmp/\n!tmp/keep\n**/*.log\n",
				"a.txt":         "a\n", "b.secret": "s\n", "tmp/x": "x\n", "tmp/keep": "k\n",
				"sub/c.log": "l\n", "sub/d.txt": "d\n",
			},
			check: func(t *testing.T, img image) {
				for _, gone := range []string{"ctx/b.secret", "ctx/tmp/x", "ctx/sub/c.log"} {
					if _, err := os.Lstat(filepath.Join(img.rootfs, gone)); err == nil {
						t.Errorf("/%s was copied despite .dockerignore", gone)
					}
				}
				wantFile(t, img.rootfs, "ctx/tmp/keep", "k\n")
				wantFile(t, img.rootfs, "ctx/sub/d.txt", "d\n")
			},
		},
		{
			name: "scratch",
			files: map[string]string{
				"Dockerfile": "FROM scratch\nCOPY hello.txt /\nCOPY tree /tree\nENV A=b\nCMD [\"/hello\"]\n",
				"hello.txt":  "hello\n", "tree/x/y": "y\n",
			},
			check: func(t *testing.T, img image) {
				wantFile(t, img.rootfs, "hello.txt", "hello\n")
				wantFile(t, img.rootfs, "tree/x/y", "y\n")
				if img.layers != 2 {
					t.Errorf("scratch image has %d layers, want 2", img.layers)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeContext(t, tc.files)
			ref := "localhost/knast-build-it/" + tc.name + ":latest"
			out, err := knast(t, append(append([]string{"build", "-t", ref}, tc.args...), dir)...)
			if err != nil {
				t.Fatalf("knast build: %v\n%s", err, out)
			}
			t.Cleanup(func() { knast(t, "image", "rm", ref) })
			k := knastImage(t, ref)
			tc.check(t, k)
			b := buildahImage(t, dir, tc.args...)
			compareTrees(t, k.rootfs, b.rootfs, buildahMountpoints)
			if kc, bc := configOf(k.cfg.Config), configOf(b.cfg.Config); !reflect.DeepEqual(kc, bc) {
				t.Errorf("configs differ:\nknast   %+v\nbuildah %+v", kc, bc)
			}
		})
	}
}

func wantFile(t *testing.T, root, p, content string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Errorf("/%s: %v", p, err)
		return
	}
	if string(b) != content {
		t.Errorf("/%s = %q, want %q", p, b, content)
	}
}

func wantOwner(t *testing.T, root, p string, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Errorf("/%s: %v", p, err)
		return
	}
	e := tree(t, filepath.Dir(filepath.Join(root, p)))[filepath.Base(p)]
	if e.UID != uid || e.GID != gid {
		t.Errorf("/%s is owned by %d:%d, want %d:%d (%v)", p, e.UID, e.GID, uid, gid, fi.Mode())
	}
}

func wantMode(t *testing.T, root, p string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Errorf("/%s: %v", p, err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("/%s has mode %v, want %v", p, fi.Mode().Perm(), mode)
	}
}

// knastOnly is for what buildah cannot be compared on: heredocs (Debian's buildah predates them),
// failures, the cache.
func TestBuildFailingRun(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nENV X=1\n\nRUN echo before-the-failure && exit 3\nRUN echo never\n"})
	out, err := knast(t, "build", "-t", "localhost/knast-build-it/fail", dir)
	if err == nil {
		t.Fatalf("a failing RUN built:\n%s", out)
	}
	for _, want := range []string{"STEP 3/4", "Dockerfile:4", "exited with status 3", "before-the-failure"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "never") && !strings.Contains(out, "RUN echo never") {
		t.Errorf("the build went on after the failure:\n%s", out)
	}
	// Quiet: the output is part of the error.
	out, err = knast(t, "build", "-q", dir)
	if err == nil || !strings.Contains(out, "before-the-failure") || !strings.Contains(out, "status 3") {
		t.Errorf("quiet failing build: err %v, output:\n%s", err, out)
	}
}

func TestBuildErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, dockerfile string
		want             []string
		args             []string
	}{
		{"unknown instruction", "FROM " + baseImage + "\nFROBNICATE now\n", []string{"Dockerfile:2: unknown instruction: FROBNICATE"}, nil},
		{"RUN --mount", "FROM " + baseImage + "\nRUN true\nRUN --mount=type=cache,target=/c true\n", []string{"STEP 3/3 (Dockerfile:3)", "RUN --mount is not supported"}, nil},
		{"COPY missing", "FROM " + baseImage + "\nCOPY nothere /x\n", []string{"(Dockerfile:2)", "nothere: no such file or directory in the build context"}, nil},
		{"bad chown user", "FROM " + baseImage + "\nCOPY --chown=nobody-here Dockerfile /x\n", []string{"(Dockerfile:2)", `no user "nobody-here"`}, nil},
		{"ADD unreachable URL", "FROM " + baseImage + "\nADD http://127.0.0.1:1/file.txt /x\n", []string{"(Dockerfile:2)", "ADD http://127.0.0.1:1/file.txt: cannot fetch the URL", "connection refused"}, nil},
		{"RUN as an unknown user", "FROM " + baseImage + "\nUSER ghost\nRUN true\n", []string{"(Dockerfile:3)", "ghost"}, nil},
		{"no target", "FROM " + baseImage + " AS a\n", []string{"--target nope: no such stage"}, []string{"--target", "nope"}},
		{"unknown network", "FROM " + baseImage + "\nRUN true\n", []string{"(Dockerfile:2)", "network kni-nowhere"}, []string{"--network", "kni-nowhere"}},
		{"output type", "FROM " + baseImage + "\n", []string{`--output: type "docker" is not supported`}, []string{"--output", "type=docker,dest=x"}},
		{"foreign platform", "FROM " + baseImage + "\nRUN true\n", []string{"(Dockerfile:1)", "arm64"}, []string{"--platform", "linux/arm64"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			args := append(append([]string{"build"}, tc.args...), dir)
			out, err := knast(t, args...)
			if err == nil {
				t.Fatalf("built:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("error lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// buildahMountpoints are what buildah's RUN leaves in its images (empty mountpoints of the files
// it bind-mounts); BuildKit and knast leave nothing.
func buildahMountpoints(p string) bool {
	switch p {
	case "etc/hostname", "etc/hosts", "etc/resolv.conf", "run":
		return true
	}
	return false
}
