package linux

import (
	"strings"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key     string
		want    string
		wantErr string
	}{
		{"net.ipv4.ip_forward", "net/ipv4/ip_forward", ""},
		{"kernel.shm_rmid_forced", "kernel/shm_rmid_forced", ""},
		{"kernel", "kernel", ""},
		{"net/ipv4/ip_forward", "net/ipv4/ip_forward", ""},
		// sysctl(8): with dots as separators, a slash stands for a dot in a name (VLAN interfaces).
		{"net.ipv4.conf.eth0/100.forwarding", "net/ipv4/conf/eth0.100/forwarding", ""},
		// With a slash first, the key is a path and its dots are literal.
		{"net/ipv4/conf/eth0.100/forwarding", "net/ipv4/conf/eth0.100/forwarding", ""},
		{"", "", "empty"},
		{"net..ipv4", "", "empty path component"},
		{".net.ipv4", "", "empty path component"},
		{"net.ipv4.", "", "empty path component"},
		{"/net/ipv4", "", "empty path component"},
		{"net/ipv4/", "", "empty path component"},
		{"net//ipv4", "", "empty path component"},
		{"net/../../etc", "", `".."`},
		{"net/./ipv4", "", `"."`},
		{"kernel/..", "", `".."`},
		{"..", "", "empty path component"},
		{"a.b/../c", "", "empty path component"},
		{"net.ipv4\x00x", "", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := SysctlPath(tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SysctlPath(%q) = %q, %v; want error containing %q", tt.key, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SysctlPath(%q): %v", tt.key, err)
			}
			if got != tt.want {
				t.Errorf("SysctlPath(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}
