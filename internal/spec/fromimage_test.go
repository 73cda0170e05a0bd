package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"# a comment\n" +
		"+nis-line\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"broken:x:notanumber:1::/:\n" +
		"app:x:1000:1000:app user:/home/app:/bin/sh\n" +
		"nohome:x:1001:1001::\n"
	testGroup = "root:x:0:\n" +
		"bin:x:1:root,daemon\n" +
		"wheel:x:10:root, app\n" +
		"app:x:1000:\n" +
		"staff:x:50:app\n" +
		"audio:x:29:other,app\n" +
		"dup:x:50:app\n"
)

// writeRootfs makes a rootfs holding etc/passwd and etc/group (skipped when empty).
func writeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"passwd": passwd, "group": group} {
		if data == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(rootfs, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs
}

func TestFromImageProcess(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 500, time.UTC)
	base := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Entrypoint: []string{"/bin/entry"},
			Cmd:        []string{"serve", "--port", "80"},
			Env:        []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8"},
			WorkingDir: "/srv/app/",
		},
	}
	tests := []struct {
		name    string
		edit    func(*ocispec.Image)
		opts    FromImageOptions
		args    []string
		env     []string
		cwd     string
		user    specs.User
		term    bool
		hostnam string
	}{
		{
			name: "entrypoint and cmd, image env over default path, root's home and groups",
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/root"},
			cwd:  "/srv/app",
			user: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{1, 10}},
		},
		{
			name: "args replace cmd and keep the entrypoint",
			opts: FromImageOptions{Args: []string{"check"}},
			args: []string{"/bin/entry", "check"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/root"},
			cwd:  "/srv/app",
			user: specs.User{AdditionalGids: []uint32{1, 10}},
		},
		{
			name: "cmd only, default path and cwd, user by name with its groups",
			edit: func(i *ocispec.Image) {
				i.Config = ocispec.ImageConfig{Cmd: []string{"sh"}, User: "app", Env: []string{"A=1", "A=2"}}
			},
			args: []string{"sh"},
			env:  []string{"PATH=" + DefaultPath, "A=2", "HOME=/home/app"},
			cwd:  "/",
			user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 50, 29}},
		},
		{
			name: "uid found in passwd gets its gid, home and groups",
			edit: func(i *ocispec.Image) { i.Config.User = "1000" },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/home/app"},
			cwd:  "/srv/app",
			user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 50, 29}},
		},
		{
			name: "uid not in passwd: gid 0, home /",
			edit: func(i *ocispec.Image) { i.Config.User = "4242" },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/"},
			cwd:  "/srv/app",
			user: specs.User{UID: 4242},
		},
		{
			name: "uid:gid verbatim, no supplementary groups",
			edit: func(i *ocispec.Image) { i.Config.User = "1000:7" },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/home/app"},
			cwd:  "/srv/app",
			user: specs.User{UID: 1000, GID: 7},
		},
		{
			name: "name:group resolved by name",
			edit: func(i *ocispec.Image) { i.Config.User = "app:staff" },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/home/app"},
			cwd:  "/srv/app",
			user: specs.User{UID: 1000, GID: 50},
		},
		{
			name: "user without home gets /",
			edit: func(i *ocispec.Image) { i.Config.User = "nohome" },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOME=/"},
			cwd:  "/srv/app",
			user: specs.User{UID: 1001, GID: 1001},
		},
		{
			name: "image HOME wins over the passwd home",
			edit: func(i *ocispec.Image) { i.Config.User = "app"; i.Config.Env = []string{"HOME=/data"} },
			args: []string{"/bin/entry", "serve", "--port", "80"},
			env:  []string{"PATH=" + DefaultPath, "HOME=/data"},
			cwd:  "/srv/app",
			user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 50, 29}},
		},
		{
			name: "options override user, cwd, env; terminal adds TERM; hostname",
			opts: FromImageOptions{
				User: "daemon", WorkingDir: "/tmp", Env: []string{"LANG=de_DE", "EXTRA=x=y"},
				Terminal: true, Hostname: "box",
			},
			args:    []string{"/bin/entry", "serve", "--port", "80"},
			env:     []string{"PATH=/opt/bin:/bin", "LANG=de_DE", "HOME=/usr/sbin", "TERM=xterm", "EXTRA=x=y"},
			cwd:     "/tmp",
			user:    specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{}},
			term:    true,
			hostnam: "box",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := base
			img.Config.Env = slices.Clone(base.Config.Env)
			img.Created = &created
			if tt.edit != nil {
				tt.edit(&img)
			}
			rootfs := writeRootfs(t, testPasswd, testGroup)
			s, err := FromImage(img, rootfs, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			p := s.Process
			if diff := cmp.Diff(tt.args, p.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.env, p.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if p.Cwd != tt.cwd {
				t.Errorf("cwd = %q, want %q", p.Cwd, tt.cwd)
			}
			if len(tt.user.AdditionalGids) == 0 {
				tt.user.AdditionalGids = nil
			}
			if diff := cmp.Diff(tt.user, p.User); diff != "" {
				t.Errorf("user (-want +got):\n%s", diff)
			}
			if p.Terminal != tt.term {
				t.Errorf("terminal = %v, want %v", p.Terminal, tt.term)
			}
			wantHost := tt.hostnam
			if wantHost == "" {
				wantHost = "knast"
			}
			if s.Hostname != wantHost {
				t.Errorf("hostname = %q, want %q", s.Hostname, wantHost)
			}
			if s.Root == nil || s.Root.Path != "rootfs" || s.Root.Readonly {
				t.Errorf("root = %+v, want path rootfs, writable", s.Root)
			}
			if !slices.Contains(p.Capabilities.Bounding, "CAP_CHOWN") || !slices.Contains(p.Capabilities.Effective, "CAP_SETUID") {
				t.Errorf("capabilities lack the image defaults: %+v", p.Capabilities)
			}
			if s.Linux == nil || s.Linux.Seccomp == nil || len(s.Linux.MaskedPaths) == 0 {
				t.Errorf("the example's hardening is missing: %+v", s.Linux)
			}
		})
	}
}

// TestFromImageLoads writes FromImage's output as a bundle's config.json and loads it back unchanged.
func TestFromImageLoads(t *testing.T) {
	rootfs := writeRootfs(t, testPasswd, testGroup)
	s, err := FromImage(ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, User: "app"}}, rootfs, FromImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Dir(rootfs)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("config changed through JSON (-want +got):\n%s", diff)
	}
}

func TestFromImageAnnotations(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))
	img := ocispec.Image{
		Created: &created,
		Author:  "someone",
		Platform: ocispec.Platform{
			OS: "linux", Architecture: "arm64", Variant: "v8", OSFeatures: []string{"a", "b"},
		},
		Config: ocispec.ImageConfig{
			Cmd:          []string{"sh"},
			StopSignal:   "SIGQUIT",
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}, "443/tcp": {}},
			Volumes:      map[string]struct{}{"/var/lib/data": {}, "/cache": {}},
			Labels: map[string]string{
				"org.example.team":                    "infra",
				AnnotationAuthor:                      "label wins",
				AnnotationImageName:                   "spoofed",
				"org.opencontainers.image.ref.name":   "v1",
				"org.opencontainers.image.source.url": "",
			},
		},
	}
	s, err := FromImage(img, writeRootfs(t, testPasswd, testGroup), FromImageOptions{
		Ref: "docker.io/library/busybox:latest", Digest: "sha256:abc",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		AnnotationOS:                          "linux",
		AnnotationArch:                        "arm64",
		AnnotationVariant:                     "v8",
		AnnotationOSFeatures:                  "a,b",
		AnnotationAuthor:                      "label wins",
		AnnotationCreated:                     "2024-05-06T06:08:09Z",
		AnnotationStopSignal:                  "SIGQUIT",
		AnnotationExposedPorts:                "443/tcp,53/udp,80/tcp",
		AnnotationVolumes:                     "/cache,/var/lib/data",
		AnnotationImageName:                   "docker.io/library/busybox:latest",
		AnnotationImageDigest:                 "sha256:abc",
		"org.example.team":                    "infra",
		"org.opencontainers.image.ref.name":   "v1",
		"org.opencontainers.image.source.url": "",
	}
	if diff := cmp.Diff(want, s.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}

	// Without metadata only the platform fields are there, and no empty values.
	s, err = FromImage(ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}}, "", FromImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Annotations) != 0 {
		t.Errorf("annotations of a bare image = %v, want none", s.Annotations)
	}
}

// TestFromImageIDFilesStayInRoot plants /etc/passwd pointing at a "host" file that defines the user; the
// lookup must resolve inside the rootfs (and fail), never read the host file. Special files are refused
// without blocking.
func TestFromImageIDFilesStayInRoot(t *testing.T) {
	host := t.TempDir()
	hostPasswd := filepath.Join(host, "passwd")
	if err := os.WriteFile(hostPasswd, []byte("evil:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, User: "evil"}}
	tests := []struct {
		name  string
		plant func(t *testing.T, rootfs string) // makes rootfs/etc/passwd
		want  string                            // error substring; empty: must resolve uid 77
	}{
		{"absolute symlink to a host file", func(t *testing.T, r string) {
			symlink(t, hostPasswd, filepath.Join(r, "etc/passwd"))
		}, `user "evil" not found in /etc/passwd`},
		{"relative symlink climbing out", func(t *testing.T, r string) {
			symlink(t, strings.Repeat("../", 20)+strings.TrimPrefix(hostPasswd, "/"), filepath.Join(r, "etc/passwd"))
		}, `user "evil" not found in /etc/passwd`},
		{"symlinked /etc directory", func(t *testing.T, r string) {
			if err := os.Remove(filepath.Join(r, "etc")); err != nil {
				t.Fatal(err)
			}
			symlink(t, host, filepath.Join(r, "etc"))
		}, `user "evil" not found in /etc/passwd`},
		{"absolute symlink inside the rootfs resolves there", func(t *testing.T, r string) {
			if err := os.MkdirAll(filepath.Join(r, "usr/lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r, "usr/lib/passwd"), []byte("evil:x:77:77::/:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			symlink(t, "/usr/lib/passwd", filepath.Join(r, "etc/passwd"))
		}, ""},
		{"fifo", func(t *testing.T, r string) {
			if err := unix.Mkfifo(filepath.Join(r, "etc/passwd"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"directory", func(t *testing.T, r string) {
			if err := os.Mkdir(filepath.Join(r, "etc/passwd"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := writeRootfs(t, "", "")
			tt.plant(t, rootfs)
			done := make(chan struct{})
			var s *specs.Spec
			var err error
			go func() {
				defer close(done)
				s, err = FromImage(img, rootfs, FromImageOptions{})
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("FromImage blocked on the planted /etc/passwd")
			}
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Process.User.UID != 77 || s.Process.User.GID != 77 {
					t.Errorf("user = %+v, want 77:77", s.Process.User)
				}
				return
			}
			if err == nil {
				t.Fatalf("FromImage resolved the user through a planted file: %+v", s.Process.User)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "config.User: ") {
				t.Errorf("error %q: want config.User: ... %q", err, tt.want)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestFromImageBad runs every testdata/fromimage-bad/<case>: image.json (an image config) with an
// optional rootfs/ must fail with an error containing each line of want.txt.
func TestFromImageBad(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "fromimage-bad", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no testdata/fromimage-bad cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, "image.json"))
			if err != nil {
				t.Fatal(err)
			}
			var img ocispec.Image
			if err := json.Unmarshal(data, &img); err != nil {
				t.Fatal(err)
			}
			var o FromImageOptions
			if data, err := os.ReadFile(filepath.Join(dir, "options.json")); err == nil {
				if err := json.Unmarshal(data, &o); err != nil {
					t.Fatal(err)
				}
			}
			s, err := FromImage(img, filepath.Join(dir, "rootfs"), o)
			if err == nil {
				t.Fatalf("FromImage accepted the image: %+v", s.Process)
			}
			if s != nil {
				t.Errorf("FromImage returned a spec with error %v", err)
			}
			want, rerr := os.ReadFile(filepath.Join(dir, "want.txt"))
			if rerr != nil {
				t.Fatal(rerr)
			}
			for line := range strings.SplitSeq(strings.TrimSpace(string(want)), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.Contains(err.Error(), line) {
					t.Errorf("error %q\ndoes not contain %q", err, line)
				}
			}
		})
	}
}
