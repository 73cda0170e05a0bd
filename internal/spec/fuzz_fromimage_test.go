package spec

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzFromImage feeds arbitrary image configurations, /etc/passwd and /etc/group contents and user
// overrides to FromImage (what `knast bundle` and `run --image` do with an untrusted image): it must
// never panic, whatever it returns must load like a bundle's config.json, and a passwd file reached
// through a symlink out of the rootfs must never be read (its only user, hostonly, must not resolve).
func FuzzFromImage(f *testing.F) {
	f.Add([]byte(`{"os":"linux","config":{"Cmd":["sh"],"User":"user","WorkingDir":"/home/user","Env":["A=1"]}}`),
		[]byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"), []byte("root:x:0:\nuser:x:1000:\n"), "", byte(0))
	f.Add([]byte(`{"config":{"Entrypoint":["/bin/app"],"User":"hostonly"}}`), []byte(""), []byte(""), "", byte(1))
	f.Add([]byte(`{"config":{"Cmd":["x"],"User":"1000:hostgroup"}}`), []byte(""), []byte(""), "hostonly:hostgroup", byte(3))
	f.Add([]byte(`{"config":{"Cmd":["x"],"WorkingDir":"/../../etc/../.."}}`), []byte("a:x:-1:99999999999::/:\n"), []byte("g:x:4294967296:a,b\n"), "a:g", byte(0))
	f.Add([]byte(`{"config":{"Cmd":["x"],"User":"4294967295:4294967295","Env":["=x","A"]}}`), []byte("::::::\n"), []byte(":::\n"), "", byte(0))
	f.Add([]byte(`{"config":{"Cmd":["x\u0000"],"Labels":{"":"x"},"StopSignal":"SIGKILL"},"created":"0001-01-01T00:00:00Z"}`), []byte(""), []byte(""), "root", byte(2))
	f.Fuzz(func(t *testing.T, cfgJSON, passwd, group []byte, user string, links byte) {
		var cfg ocispec.Image
		if json.Unmarshal(cfgJSON, &cfg) != nil {
			return
		}
		base := t.TempDir()
		host := filepath.Join(base, "host")
		rootfs := filepath.Join(base, "rootfs")
		for _, d := range []string{host, filepath.Join(rootfs, "etc")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// The host's files hold the only hostonly/hostgroup entries.
		hostPasswd, hostGroup := filepath.Join(host, "passwd"), filepath.Join(host, "group")
		if err := os.WriteFile(hostPasswd, []byte("hostonly:x:4242:4242::/hostonly:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hostGroup, []byte("hostgroup:x:4343:hostonly\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		write := func(name string, data []byte, link bool, target string) {
			p := filepath.Join(rootfs, "etc", name)
			var err error
			if link {
				err = os.Symlink(target, p)
			} else {
				err = os.WriteFile(p, data, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// Bit 0: passwd an absolute symlink to the host's; bit 1: group a relative one climbing out.
		write("passwd", passwd, links&1 != 0, hostPasswd)
		write("group", group, links&2 != 0, "../../../../../../.."+hostGroup)

		s, err := FromImage(cfg, rootfs, FromImageOptions{User: user})
		if err != nil {
			return
		}
		// Only the host's passwd gives HOME=/hostonly, only the host's group gid 4343 by name.
		named := user + cfg.Config.User + strings.Join(cfg.Config.Env, "")
		if links&1 != 0 && slices.Contains(s.Process.Env, "HOME=/hostonly") && !strings.Contains(named, "hostonly") {
			t.Fatalf("user resolved through a symlinked /etc/passwd on the host: %+v %v", s.Process.User, s.Process.Env)
		}
		if links&2 != 0 && s.Process.User.GID == 4343 && !strings.Contains(named, "4343") {
			t.Fatalf("group resolved through a symlinked /etc/group on the host: %+v", s.Process.User)
		}
		if !path.IsAbs(s.Process.Cwd) || path.Clean(s.Process.Cwd) != s.Process.Cwd {
			t.Fatalf("cwd %q is not absolute and clean", s.Process.Cwd)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := parse("/bundle/config.json", data); err != nil {
			t.Fatalf("FromImage's config does not load: %v\n%s", err, data)
		}
	})
}
