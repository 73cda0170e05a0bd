package linux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knast/knast/internal/testutil"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestMountConstantsMatchKernel(t *testing.T) {
	tests := []struct {
		name      string
		ours, sys uint64
	}{
		{"MS_RDONLY", uint64(mountMSRdonly), unix.MS_RDONLY},
		{"MS_NOSUID", uint64(mountMSNosuid), unix.MS_NOSUID},
		{"MS_NODEV", uint64(mountMSNodev), unix.MS_NODEV},
		{"MS_NOEXEC", uint64(mountMSNoexec), unix.MS_NOEXEC},
		{"MS_SYNCHRONOUS", uint64(mountMSSync), unix.MS_SYNCHRONOUS},
		{"MS_REMOUNT", uint64(mountMSRemount), unix.MS_REMOUNT},
		{"MS_MANDLOCK", uint64(mountMSMandlock), unix.MS_MANDLOCK},
		{"MS_DIRSYNC", uint64(mountMSDirsync), unix.MS_DIRSYNC},
		{"MS_NOSYMFOLLOW", uint64(mountMSNosymfollow), unix.MS_NOSYMFOLLOW},
		{"MS_NOATIME", uint64(mountMSNoatime), unix.MS_NOATIME},
		{"MS_NODIRATIME", uint64(mountMSNodiratime), unix.MS_NODIRATIME},
		{"MS_BIND", uint64(mountMSBind), unix.MS_BIND},
		{"MS_REC", uint64(mountMSRec), unix.MS_REC},
		{"MS_SILENT", uint64(mountMSSilent), unix.MS_SILENT},
		{"MS_UNBINDABLE", uint64(mountMSUnbindable), unix.MS_UNBINDABLE},
		{"MS_PRIVATE", uint64(mountMSPrivate), unix.MS_PRIVATE},
		{"MS_SLAVE", uint64(mountMSSlave), unix.MS_SLAVE},
		{"MS_SHARED", uint64(mountMSShared), unix.MS_SHARED},
		{"MS_RELATIME", uint64(mountMSRelatime), unix.MS_RELATIME},
		{"MS_I_VERSION", uint64(mountMSIVersion), unix.MS_I_VERSION},
		{"MS_STRICTATIME", uint64(mountMSStrictatime), unix.MS_STRICTATIME},
		{"MS_LAZYTIME", uint64(mountMSLazytime), unix.MS_LAZYTIME},
		{"MOUNT_ATTR_RDONLY", mountAttrRdonly, unix.MOUNT_ATTR_RDONLY},
		{"MOUNT_ATTR_NOSUID", mountAttrNosuid, unix.MOUNT_ATTR_NOSUID},
		{"MOUNT_ATTR_NODEV", mountAttrNodev, unix.MOUNT_ATTR_NODEV},
		{"MOUNT_ATTR_NOEXEC", mountAttrNoexec, unix.MOUNT_ATTR_NOEXEC},
		{"MOUNT_ATTR__ATIME", mountAttrAtimeMask, unix.MOUNT_ATTR__ATIME},
		{"MOUNT_ATTR_RELATIME", mountAttrRelatime, unix.MOUNT_ATTR_RELATIME},
		{"MOUNT_ATTR_NOATIME", mountAttrNoatime, unix.MOUNT_ATTR_NOATIME},
		{"MOUNT_ATTR_STRICTATIME", mountAttrStrictatime, unix.MOUNT_ATTR_STRICTATIME},
		{"MOUNT_ATTR_NODIRATIME", mountAttrNodiratime, unix.MOUNT_ATTR_NODIRATIME},
		{"MOUNT_ATTR_NOSYMFOLLOW", mountAttrNosymfollow, unix.MOUNT_ATTR_NOSYMFOLLOW},
		{"ST_RDONLY", mountStRdonly, unix.ST_RDONLY},
		{"ST_NOSUID", mountStNosuid, unix.ST_NOSUID},
		{"ST_NODEV", mountStNodev, unix.ST_NODEV},
		{"ST_NOEXEC", mountStNoexec, unix.ST_NOEXEC},
		{"ST_NOATIME", mountStNoatime, unix.ST_NOATIME},
		{"ST_NODIRATIME", mountStNodiratime, unix.ST_NODIRATIME},
		{"ST_RELATIME", mountStRelatime, unix.ST_RELATIME},
		{"ST_NOSYMFOLLOW", mountStNosymfollow, 0x2000},
	}
	for _, tt := range tests {
		if tt.ours != tt.sys {
			t.Errorf("%s: ours %#x, kernel %#x", tt.name, tt.ours, tt.sys)
		}
	}
}

// rootfsChildEnv names the file holding a rootfsChildInput: set, the test binary is the re-executed
// child that builds the container's filesystem.
const rootfsChildEnv = "KNAST_TEST_ROOTFS_CHILD"

const rootfsResultPrefix = "KNAST-ROOTFS-RESULT "

type rootfsChildInput struct {
	Spec    *specs.Spec
	Rootfs  string
	Opts    RootfsOptions
	PreTmp  string // a directory the child covers with a tmpfs first (a submount for rro)
	Console bool   // open a pty and call SetupConsoleMount
}

// TestRootfsChild is not a test of its own: it is the body of the child processes that the tests
// below start in new namespaces. Run directly, it does nothing.
func TestRootfsChild(t *testing.T) {
	in := os.Getenv(rootfsChildEnv)
	if in == "" {
		return
	}
	res := map[string]string{}
	if err := rootfsChild(in, res); err != nil {
		res["error"] = err.Error()
	}
	b, _ := json.Marshal(res)
	fmt.Printf("%s%s\n", rootfsResultPrefix, b)
	os.Exit(0)
}

func rootfsChild(inPath string, res map[string]string) error {
	raw, err := os.ReadFile(inPath)
	if err != nil {
		return err
	}
	var in rootfsChildInput
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	if in.PreTmp != "" {
		if err := unix.Mount("tmpfs", in.PreTmp, "tmpfs", 0, "size=1m"); err != nil {
			return fmt.Errorf("pre-mount: %w", err)
		}
	}
	if err := PrepareRootfs(in.Spec, in.Rootfs, in.Opts); err != nil {
		return err
	}
	// Before the pivot the host tree is still visible: see where mounts landed.
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.Mountpoint == "/etc" || strings.HasPrefix(m.Mountpoint, "/etc/") {
			res["host_etc_mount"] = m.Mountpoint + " " + m.FSType
		}
		if m.Mountpoint == filepath.Join(in.Rootfs, "etc") {
			res["rootfs_etc_fstype"] = m.FSType
		}
	}
	if err := PivotRoot(in.Rootfs, in.Opts.NoPivot); err != nil {
		return err
	}
	if in.Console {
		if err := rootfsChildConsole(res); err != nil {
			return err
		}
	}
	if err := FinishRootfs(in.Spec); err != nil {
		return err
	}
	rootfsChildObserve(res)
	return nil
}

// rootfsChildConsole makes a pty in the container's devpts and binds its slave onto /dev/console.
func rootfsChildConsole(res map[string]string) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return err
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return err
	}
	slave := "/dev/pts/" + strconv.Itoa(n)
	if err := SetupConsoleMount(slave); err != nil {
		return err
	}
	var a, b unix.Stat_t
	if unix.Stat(slave, &a) == nil && unix.Stat("/dev/console", &b) == nil && a.Rdev == b.Rdev {
		res["console"] = "slave"
	}
	return nil
}

func rootfsErrno(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func rootfsStatfsRO(p string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return rootfsErrno(err)
	}
	return strconv.FormatBool(st.Flags&unix.ST_RDONLY != 0)
}

func rootfsChildObserve(res map[string]string) {
	write := func(p string) string { return rootfsErrno(os.WriteFile(p, []byte("x"), 0o644)) }
	res["ro_write"] = write("/ro/new")
	res["rro_sub_write"] = write("/rro/sub/new")
	res["rro_write"] = write("/rro/new")
	res["rw_write"] = write("/rw/new")
	res["root_write"] = write("/new")
	res["tmp_write"] = write("/tmp/new")
	res["rodir_write"] = write("/rodir/new")
	res["proc_sys_ro"] = rootfsStatfsRO("/proc/sys")
	res["sys_ro"] = rootfsStatfsRO("/sys")
	res["dev_ro"] = rootfsStatfsRO("/dev")
	res["cgroup_ro"] = rootfsStatfsRO("/sys/fs/cgroup/memory")
	if b, err := os.ReadFile("/etc/secret"); err == nil {
		res["masked_file"] = strconv.Quote(string(b))
	}
	if ents, err := os.ReadDir("/secretdir"); err == nil {
		res["masked_dir"] = strconv.Itoa(len(ents))
	}
	if b, err := os.ReadFile("/proc/timer_list"); err == nil {
		res["masked_timer_list"] = strconv.Itoa(len(b))
	}
	var sfs unix.Statfs_t
	if unix.Statfs("/proc/acpi", &sfs) == nil {
		res["masked_acpi_tmpfs"] = strconv.FormatBool(sfs.Type == unix.TMPFS_MAGIC)
	}
	var st unix.Stat_t
	if unix.Stat("/dev/null", &st) == nil {
		res["dev_null"] = fmt.Sprintf("%o %d:%d", st.Mode&unix.S_IFMT, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if unix.Stat("/tmp", &st) == nil {
		res["tmp_mode"] = fmt.Sprintf("%o", st.Mode&0o7777)
	}
	if unix.Stat("/idmapped/file", &st) == nil {
		res["idmap_uid"] = strconv.Itoa(int(st.Uid))
	}
	if unix.Stat("/idtmp", &st) == nil {
		res["idmap_tmpfs_uid"] = strconv.Itoa(int(st.Uid))
	}
	if unix.Lstat("/dev/mydev", &st) == nil {
		res["mydev"] = fmt.Sprintf("%o %o %d:%d %d:%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, st.Gid)
	}
	if unix.Lstat("/dev/myfifo", &st) == nil {
		res["myfifo"] = fmt.Sprintf("%o", st.Mode&unix.S_IFMT)
	}
	if mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter("/")); err == nil && len(mounts) == 1 {
		res["root_shared"] = strconv.FormatBool(strings.Contains(mounts[0].Optional, "shared:"))
	}
	res["ptmx"], _ = os.Readlink("/dev/ptmx")
	res["dev_fd"], _ = os.Readlink("/dev/fd")
	res["proc_self"], _ = os.Readlink("/proc/self")
	_, err := os.Stat("/dev/pts/ptmx")
	res["devpts"] = rootfsErrno(err)
	_, err = os.Stat("/sys/kernel")
	res["sysfs"] = rootfsErrno(err)
	_, err = os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	res["cgroup_memory"] = rootfsErrno(err)
	if b, err := os.ReadFile("/copy/seed"); err == nil {
		res["copyup"] = string(b)
	}
	res["copyup_write"] = write("/copy/new")
	out, err := exec.Command("/bin/sh", "-c", "echo hi > /dev/shm/sh && cat /dev/shm/sh").Output()
	res["busybox_sh"] = strings.TrimSpace(string(out)) + " " + rootfsErrno(err)
}

// rootfsRunChild runs TestRootfsChild in new namespaces and returns what it observed.
func rootfsRunChild(t *testing.T, in rootfsChildInput, attr *syscall.SysProcAttr) map[string]string {
	t.Helper()
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	inPath := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(inPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRootfsChild$")
	cmd.Env = append(os.Environ(), rootfsChildEnv+"="+inPath)
	cmd.SysProcAttr = attr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), rootfsResultPrefix); ok {
			res := map[string]string{}
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				t.Fatal(err)
			}
			return res
		}
	}
	t.Fatalf("child printed no result\nstdout: %s\nstderr: %s", out, stderr.String())
	return nil
}

// rootfsBundle is a busybox rootfs plus the host directories its spec binds.
type rootfsBundle struct {
	rootfs, ro, rro, rw, idmap string
}

func rootfsMakeBundle(t *testing.T) rootfsBundle {
	t.Helper()
	dir := t.TempDir()
	// The tempdir must be traversable by the ID-mapped helper and by mapped users.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := rootfsBundle{
		rootfs: filepath.Join(dir, "rootfs"), ro: filepath.Join(dir, "ro"), rro: filepath.Join(dir, "rro"),
		rw: filepath.Join(dir, "rw"), idmap: filepath.Join(dir, "idmap"),
	}
	if err := testutil.BusyboxRootfs(b.rootfs); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{b.ro, b.rro + "/sub", b.rw, b.idmap, b.rootfs + "/secretdir", b.rootfs + "/rodir", b.rootfs + "/copy"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		b.rootfs + "/etc/secret": "top secret", b.rootfs + "/secretdir/file": "hidden",
		b.rootfs + "/copy/seed": "seeded", b.idmap + "/file": "owned by root",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func rootfsDefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

func rootfsSpec(b rootfsBundle, extra ...specs.Mount) *specs.Spec {
	return &specs.Spec{
		Root:   &specs.Root{Path: b.rootfs, Readonly: true},
		Mounts: append(rootfsDefaultMounts(), extra...),
		Linux: &specs.Linux{
			MaskedPaths:   []string{"/etc/secret", "/secretdir", "/proc/timer_list", "/proc/acpi", "/does/not/exist"},
			ReadonlyPaths: []string{"/rodir", "/proc/sys", "/also/missing"},
		},
	}
}

func rootfsMountsSnapshot(t *testing.T) map[string]bool {
	t.Helper()
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, m := range mounts {
		set[m.Mountpoint+" "+m.FSType] = true
	}
	return set
}

func rootfsCheck(t *testing.T, res map[string]string, want map[string]string) {
	t.Helper()
	if e := res["error"]; e != "" {
		t.Fatalf("child failed: %s", e)
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}
}

func TestPrepareRootfs(t *testing.T) {
	testutil.RequireRoot(t)
	before := rootfsMountsSnapshot(t)
	b := rootfsMakeBundle(t)
	// On-disk IDs are the containerID side: root-owned files show as hostID 100000.
	idmap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s := rootfsSpec(b,
		specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=1777", "size=1m"}},
		specs.Mount{Destination: "/ro", Source: b.ro, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/rro", Source: b.rro, Options: []string{"rbind", "rro"}},
		specs.Mount{Destination: "/rw", Source: b.rw, Options: []string{"bind", "rw", "rprivate"}},
		specs.Mount{Destination: "/copy", Type: "tmpfs", Source: "tmpfs", Options: []string{"tmpcopyup", "size=1m"}},
		specs.Mount{Destination: "/idmapped", Source: b.idmap, Options: []string{"bind", "idmap"}, UIDMappings: idmap, GIDMappings: idmap},
		specs.Mount{Destination: "/idtmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap", "size=1m"}, UIDMappings: idmap, GIDMappings: idmap},
	)
	res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs, PreTmp: b.rro + "/sub", Console: true, Opts: RootfsOptions{Terminal: true}},
		&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC})
	rootfsCheck(t, res, map[string]string{
		"ro_write": "EROFS", "rro_write": "EROFS", "rro_sub_write": "EROFS", "rw_write": "ok",
		"root_write": "EROFS", "tmp_write": "ok", "rodir_write": "EROFS", "proc_sys_ro": "true",
		"sys_ro": "true", "dev_ro": "false", "cgroup_ro": "true", "cgroup_memory": "ok",
		"masked_file": `""`, "masked_dir": "0", "masked_timer_list": "0", "masked_acpi_tmpfs": "true",
		"dev_null": "20000 1:3", "tmp_mode": "1777", "ptmx": "pts/ptmx", "dev_fd": "/proc/self/fd",
		"proc_self": "1", "devpts": "ok", "sysfs": "ok", "copyup": "seeded", "copyup_write": "ok",
		"idmap_uid": "100000", "idmap_tmpfs_uid": "100000", "console": "slave", "busybox_sh": "hi ok",
	})
	// The rw bind wrote through to the host; the copy-up tmpfs did not.
	if _, err := os.Stat(filepath.Join(b.rw, "new")); err != nil {
		t.Errorf("write through the rw bind is missing on the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.rootfs, "copy", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tmpcopyup wrote into the image: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(b.rootfs, "etc", "secret")); err != nil || string(b) != "top secret" {
		t.Errorf("masked file changed in the image: %q, %v", b, err)
	}
	rootfsNoLeaks(t, before, b.rootfs)
}

func rootfsNoLeaks(t *testing.T, before map[string]bool, dir string) {
	t.Helper()
	for m := range rootfsMountsSnapshot(t) {
		if !before[m] {
			t.Errorf("mount left on the host: %s", m)
		}
		if strings.Contains(m, filepath.Dir(dir)) {
			t.Errorf("mount under the test bundle on the host: %s", m)
		}
	}
}

// A rootfs whose /proc is a symlink climbing out of it must still get proc mounted inside it.
func TestPrepareRootfsSymlinkEscape(t *testing.T) {
	testutil.RequireRoot(t)
	before := rootfsMountsSnapshot(t)
	b := rootfsMakeBundle(t)
	if err := os.Remove(filepath.Join(b.rootfs, "proc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/../../etc", filepath.Join(b.rootfs, "proc")); err != nil {
		t.Fatal(err)
	}
	hostEtc := rootfsDirNames(t, "/etc")
	s := rootfsSpec(b)
	s.Root.Readonly = false
	s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	for _, noPivot := range []bool{false, true} {
		t.Run(fmt.Sprintf("nopivot=%v", noPivot), func(t *testing.T) {
			res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs, Opts: RootfsOptions{NoPivot: noPivot}},
				&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC})
			rootfsCheck(t, res, map[string]string{
				"host_etc_mount": "", "rootfs_etc_fstype": "proc", "proc_self": "1", "dev_null": "20000 1:3",
			})
		})
	}
	if got := rootfsDirNames(t, "/etc"); got != hostEtc {
		t.Error("the host's /etc changed")
	}
	rootfsNoLeaks(t, before, b.rootfs)
}

func rootfsDirNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// In a user namespace devices are bind-mounted from the host, sysfs falls back to an rbind and flags
// locked by the host are kept; an ID-mapped mount of a host filesystem is refused with a clear error.
func TestPrepareRootfsUserNS(t *testing.T) {
	testutil.RequireRoot(t)
	before := rootfsMountsSnapshot(t)
	b := rootfsMakeBundle(t)
	full := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}
	attr := func() *syscall.SysProcAttr {
		return &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC,
			UidMappings: full, GidMappings: full,
		}
	}
	s := rootfsSpec(b, specs.Mount{Destination: "/ro", Source: b.ro, Options: []string{"rbind", "ro", "nosuid"}})
	res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs, Opts: RootfsOptions{UserNS: true}}, attr())
	rootfsCheck(t, res, map[string]string{
		"ro_write": "EROFS", "root_write": "EROFS", "sysfs": "ok", "sys_ro": "true", "dev_null": "20000 1:3",
		"masked_file": `""`, "masked_dir": "0", "proc_self": "1", "cgroup_memory": "ok", "busybox_sh": "hi ok",
	})

	idmap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
	s = rootfsSpec(b, specs.Mount{Destination: "/idmapped", Source: b.idmap, Options: []string{"bind", "idmap"}, UIDMappings: idmap, GIDMappings: idmap})
	res = rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs, Opts: RootfsOptions{UserNS: true}}, attr())
	want := fmt.Sprintf("mount %q on \"/idmapped\" (mounts[%d]): the kernel refused an ID-mapped mount", b.idmap, len(s.Mounts)-1)
	if !strings.HasPrefix(res["error"], want) {
		t.Errorf("error = %q, want prefix %q", res["error"], want)
	}
	rootfsNoLeaks(t, before, b.rootfs)
}

func TestPrepareRootfsErrorNamesMount(t *testing.T) {
	testutil.RequireRoot(t)
	b := rootfsMakeBundle(t)
	s := rootfsSpec(b, specs.Mount{Destination: "/bad", Type: "nosuchfs", Source: "none"})
	res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs},
		&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC})
	want := fmt.Sprintf(`mount "none" on "/bad" (mounts[%d]): no such device`, len(s.Mounts)-1)
	if res["error"] != want {
		t.Errorf("error = %q, want %q", res["error"], want)
	}
}

// linux.devices are created with their type, mode and owner; a read-only /dev is remounted read-only
// only after they exist; a cgroup namespace gets the cgroup filesystems themselves; the final root
// propagation is applied.
func TestPrepareRootfsDevices(t *testing.T) {
	testutil.RequireRoot(t)
	b := rootfsMakeBundle(t)
	s := rootfsSpec(b)
	s.Mounts[1].Options = append(s.Mounts[1].Options, "ro")
	mode, uid := os.FileMode(0o640), uint32(1000)
	s.Linux.Devices = []specs.LinuxDevice{
		{Path: "/dev/mydev", Type: "c", Major: 1, Minor: 7, FileMode: &mode, UID: &uid, GID: &uid},
		{Path: "/dev/myfifo", Type: "p"},
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.CgroupNamespace}}
	s.Linux.RootfsPropagation = "shared"
	res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs},
		&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP})
	rootfsCheck(t, res, map[string]string{
		"mydev": "20000 640 1:7 1000:1000", "myfifo": "10000", "dev_null": "20000 1:3", "dev_ro": "true",
		"cgroup_memory": "ok", "cgroup_ro": "true", "root_shared": "true", "ptmx": "pts/ptmx",
	})
}

// CVE-2025-31133: masking binds /dev/null, so a /dev/null that is not the null device must stop it.
func TestFinishRootfsRejectsFakeDevNull(t *testing.T) {
	testutil.RequireRoot(t)
	b := rootfsMakeBundle(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(b.rootfs, "dev", "null")); err != nil {
		t.Fatal(err)
	}
	s := rootfsSpec(b)
	s.Mounts = s.Mounts[:1] // proc only: the image's /dev is used as is
	res := rootfsRunChild(t, rootfsChildInput{Spec: s, Rootfs: b.rootfs},
		&syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC})
	want := `linux.maskedPaths[0] "/etc/secret": /dev/null is not the null device (char 1:3)`
	if res["error"] != want {
		t.Errorf("error = %q, want %q", res["error"], want)
	}
	if b, err := os.ReadFile("/etc/passwd"); err != nil || len(b) == 0 {
		t.Errorf("host /etc/passwd damaged: %v", err)
	}
}
