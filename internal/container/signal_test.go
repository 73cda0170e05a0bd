package container

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	sigMax, rtMin, rtMax := sigLimits()
	if runtime.GOOS == "linux" && (sigMax != 64 || rtMin != 34 || rtMax != 64) {
		t.Fatalf("linux limits = %d %d %d, want 64 34 64", sigMax, rtMin, rtMax)
	}
	tests := []struct {
		in      string
		want    unix.Signal
		wantErr string
	}{
		{in: "TERM", want: unix.SIGTERM},
		{in: "SIGTERM", want: unix.SIGTERM},
		{in: "sigterm", want: unix.SIGTERM},
		{in: "Term", want: unix.SIGTERM},
		{in: "KILL", want: unix.SIGKILL},
		{in: "SIGHUP", want: unix.SIGHUP},
		{in: "usr1", want: unix.SIGUSR1},
		{in: "SIGWINCH", want: unix.SIGWINCH},
		{in: "9", want: unix.SIGKILL},
		{in: "15", want: unix.SIGTERM},
		{in: "1", want: unix.SIGHUP},
		{in: "RTMIN", want: unix.Signal(rtMin)},
		{in: "SIGRTMIN+3", want: unix.Signal(rtMin + 3)},
		{in: "rtmin+0", want: unix.Signal(rtMin)},
		{in: "RTMAX", want: unix.Signal(rtMax)},
		{in: "RTMAX-1", want: unix.Signal(rtMax - 1)},
		{in: "SIGRTMAX-2", want: unix.Signal(rtMax - 2)},
		{in: strconv.Itoa(sigMax), want: unix.Signal(sigMax)},

		{in: "FOO", wantErr: `invalid signal "FOO"`},
		{in: "SIGFOO", wantErr: `invalid signal "SIGFOO"`},
		{in: "", wantErr: `invalid signal ""`},
		{in: "SIG", wantErr: `invalid signal "SIG"`},
		{in: "0", wantErr: `invalid signal "0"`},
		{in: "-9", wantErr: `invalid signal "-9"`},
		{in: strconv.Itoa(sigMax + 1), wantErr: `invalid signal "` + strconv.Itoa(sigMax+1) + `"`},
		{in: "99999999999999999999", wantErr: `invalid signal "99999999999999999999"`},
		{in: " 9", wantErr: `invalid signal " 9"`},
		{in: "TERM9", wantErr: `invalid signal "TERM9"`},
		{in: "RTMIN-1", wantErr: `invalid signal "RTMIN-1"`},
		{in: "RTMAX+1", wantErr: `invalid signal "RTMAX+1"`},
		{in: "RTMIN+", wantErr: `invalid signal "RTMIN+"`},
		{in: "RTMIN++1", wantErr: `invalid signal "RTMIN++1"`},
		{in: "RTMIN+x", wantErr: `invalid signal "RTMIN+x"`},
		{in: "RTMIN+" + strconv.Itoa(rtMax-rtMin+1), wantErr: `invalid signal "RTMIN+`},
		{in: "RTMAX-" + strconv.Itoa(rtMax-rtMin+1), wantErr: `invalid signal "RTMAX-`},
		{in: "RTMINX", wantErr: `invalid signal "RTMINX"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSignal(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseSignal(%q) = %d, want error %q", tt.in, got, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSignal(%q) error %q, want prefix %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSignal(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSignal(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseSignalNames checks every name x/sys knows round-trips.
func TestParseSignalNames(t *testing.T) {
	for n := 1; n < 32; n++ {
		name := unix.SignalName(unix.Signal(n))
		if name == "" {
			continue
		}
		for _, in := range []string{name, strings.TrimPrefix(name, "SIG"), strings.ToLower(name)} {
			got, err := ParseSignal(in)
			if err != nil || got != unix.Signal(n) {
				t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, n)
			}
		}
	}
}
