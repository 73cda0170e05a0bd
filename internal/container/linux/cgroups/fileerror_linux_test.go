package cgroups

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFileError(t *testing.T) {
	tests := []struct {
		e    *fileError
		want string
	}{
		{&fileError{field: "linux.resources.memory.swap", path: "/sys/fs/cgroup/memory/x/memory.memsw.limit_in_bytes", err: unix.ENOENT},
			"linux.resources.memory.swap: /sys/fs/cgroup/memory/x/memory.memsw.limit_in_bytes: no such file (swap accounting disabled)"},
		{&fileError{field: "linux.resources.blockIO.leafWeight", path: "/sys/fs/cgroup/blkio/x/blkio.leaf_weight", err: unix.ENOENT},
			"linux.resources.blockIO.leafWeight: /sys/fs/cgroup/blkio/x/blkio.leaf_weight: no such file (removed with the CFQ scheduler in Linux 5.0)"},
		{&fileError{field: "linux.resources.pids.limit", path: "/p/pids.max", err: unix.EPERM},
			"linux.resources.pids.limit: /p/pids.max: operation not permitted"},
		{&fileError{path: "/p/cgroup.procs", err: unix.EACCES}, "/p/cgroup.procs: permission denied"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.e, tc.e.err) {
			t.Errorf("%v does not unwrap to %v", tc.e, tc.e.err)
		}
	}
}
