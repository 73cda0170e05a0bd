package benchutil

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", ms(7), Summary{N: 1, Median: 7 * time.Millisecond, P90: 7 * time.Millisecond, Min: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"odd unsorted", ms(5, 1, 3), Summary{N: 3, Median: 3 * time.Millisecond, P90: 5 * time.Millisecond, Min: time.Millisecond, Max: 5 * time.Millisecond}},
		{"even takes middle mean", ms(4, 1, 2, 3), Summary{N: 4, Median: 2500 * time.Microsecond, P90: 4 * time.Millisecond, Min: time.Millisecond, Max: 4 * time.Millisecond}},
		{"ten: p90 is the 9th", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), Summary{N: 10, Median: 5500 * time.Microsecond, P90: 9 * time.Millisecond, Min: time.Millisecond, Max: 10 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSummarizeKeepsInput(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("Summarize reordered its input: %v", in)
	}
}

func TestNearestRank(t *testing.T) {
	tests := []struct{ n, p, want int }{
		{1, 90, 0}, {10, 90, 8}, {50, 90, 44}, {51, 90, 45}, {100, 50, 49}, {3, 0, 0},
	}
	for _, tt := range tests {
		if got := nearestRank(tt.n, tt.p); got != tt.want {
			t.Errorf("nearestRank(%d, %d) = %d, want %d", tt.n, tt.p, got, tt.want)
		}
	}
}

func TestMedianInt(t *testing.T) {
	tests := []struct {
		in   []int64
		want int64
	}{
		{nil, 0}, {[]int64{4}, 4}, {[]int64{9, 1, 5}, 5}, {[]int64{8, 2, 6, 4}, 4},
	}
	for _, tt := range tests {
		if got := MedianInt(tt.in); got != tt.want {
			t.Errorf("MedianInt(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestMedianIntKeepsInput(t *testing.T) {
	in := []int64{3, 1, 2}
	MedianInt(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("MedianInt reordered its input: %v", in)
	}
}

func TestDelta(t *testing.T) {
	tests := []struct {
		a, b time.Duration
		want string
	}{
		{3 * time.Millisecond, time.Millisecond, "+2.00"}, {time.Millisecond, 1500 * time.Microsecond, "-0.50"},
		{0, time.Millisecond, "n/a"}, {time.Millisecond, 0, "n/a"},
	}
	for _, tt := range tests {
		if got := Delta(tt.a, tt.b); got != tt.want {
			t.Errorf("Delta(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b float64
		want string
	}{
		{2, 1, "2.00x"}, {1, 4, "0.25x"}, {0, 1, "n/a"}, {1, 0, "n/a"}, {-1, 1, "n/a"},
	}
	for _, tt := range tests {
		if got := Ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestMSAndKiB(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"ms whole", MS(2 * time.Millisecond), "2.00"},
		{"ms fraction", MS(1234567 * time.Nanosecond), "1.23"},
		{"ms zero", MS(0), "0.00"},
		{"kib exact", KiB(4096), "4"},
		{"kib truncates", KiB(2047), "1"},
		{"kib zero", KiB(0), "0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, [][]string{{"runtime", "ms"}, {"knast", "1.50"}}); err != nil {
		t.Fatal(err)
	}
	want := "runtime  ms\nknast    1.50\n"
	if b.String() != want {
		t.Errorf("Table = %q, want %q", b.String(), want)
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name string
		bin  string
		args []string
		want string
	}{
		{"first line, trimmed", "/bin/sh", []string{"-c", "printf '  v1.2\\nsecond\\n'"}, "v1.2"},
		{"failing command", "/bin/sh", []string{"-c", "echo v9; exit 3"}, "?"},
		{"missing binary", "/nonexistent/knast-bench-bin", nil, "?"},
		{"timeout", "/bin/sh", []string{"-c", "exec sleep 5"}, "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Version(context.Background(), time.Second, tt.bin, tt.args...); got != tt.want {
				t.Errorf("Version(%s %q) = %q, want %q", tt.bin, tt.args, got, tt.want)
			}
		})
	}
}
