package spec

import (
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"A-z_0.9+x", true},
		{"...", true},
		{".hidden", true},
		{strings.Repeat("a", 1024), true},
		{strings.Repeat("a", 1025), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"../x", false},
		{"a,b", false}, // runc's regexp range "+-." never meant ','
		{"a b", false},
		{"a\x00", false},
		{"ünicode", false},
		{"a:b", false},
	}
	for _, tt := range tests {
		err := ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "container id") {
			t.Errorf("ValidateID(%q) error %q does not start with \"container id\"", tt.id, err)
		}
	}
}
