package bsdnet

import "testing"

func TestJail(t *testing.T) {
	tests := []struct {
		in      string
		jid     int
		name    string
		wantErr bool
	}{
		{"12", 12, "", false},
		{"web-1", 0, "web-1", false},
		{"parent.child", 0, "parent.child", false},
		{"0", 0, "", true},
		{"-3", 0, "", true},
		{"", 0, "", true},
		{"/var/run/netns/x", 0, "", true},
		{"a\x00b", 0, "", true},
	}
	for _, tt := range tests {
		jid, name, err := Jail(tt.in)
		if (err != nil) != tt.wantErr || jid != tt.jid || name != tt.name {
			t.Errorf("Jail(%q) = %d, %q, %v", tt.in, jid, name, err)
		}
	}
}
