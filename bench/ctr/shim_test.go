//go:build linux

package main

import "testing"

// The expected values were read from a live containerd 1.6 shim: its -address, -namespace and -id
// flags and the socket it created under /run/containerd/s.
func TestShimSocket(t *testing.T) {
	tests := []struct{ address, ns, id, want string }{
		{"/tmp/knast-bctr-3722035549/containerd.sock", "knast-bctr-3722035549", "knast-w0",
			"/run/containerd/s/715ca49cfd33f2c1eeda3a7789bd17273e52556e4b65c22c2187cab665a9f2d5"},
	}
	for _, tt := range tests {
		if got := shimSocket(tt.address, tt.ns, tt.id); got != tt.want {
			t.Errorf("shimSocket(%q, %q, %q) = %q, want %q", tt.address, tt.ns, tt.id, got, tt.want)
		}
	}
}
