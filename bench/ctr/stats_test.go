package main

import (
	"bytes"
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
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", ms(7), summary{N: 1, Median: 7 * time.Millisecond, P90: 7 * time.Millisecond, Min: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"odd unsorted", ms(5, 1, 3), summary{N: 3, Median: 3 * time.Millisecond, P90: 5 * time.Millisecond, Min: time.Millisecond, Max: 5 * time.Millisecond}},
		{"even takes middle mean", ms(4, 1, 2, 3), summary{N: 4, Median: 2500 * time.Microsecond, P90: 4 * time.Millisecond, Min: time.Millisecond, Max: 4 * time.Millisecond}},
		{"ten: p90 is the 9th", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), summary{N: 10, Median: 5500 * time.Microsecond, P90: 9 * time.Millisecond, Min: time.Millisecond, Max: 10 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSummarizeKeepsInput(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("summarize reordered its input: %v", in)
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

func TestDelta(t *testing.T) {
	tests := []struct {
		a, b time.Duration
		want string
	}{
		{3 * time.Millisecond, time.Millisecond, "+2.00"}, {time.Millisecond, 1500 * time.Microsecond, "-0.50"},
		{0, time.Millisecond, "n/a"}, {time.Millisecond, 0, "n/a"},
	}
	for _, tt := range tests {
		if got := delta(tt.a, tt.b); got != tt.want {
			t.Errorf("delta(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
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
		if got := ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := table(&b, [][]string{{"runtime", "ms"}, {"knast", "1.50"}}); err != nil {
		t.Fatal(err)
	}
	want := "runtime  ms\nknast    1.50\n"
	if b.String() != want {
		t.Errorf("table = %q, want %q", b.String(), want)
	}
}
