package benchutil

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is what a report shows for one series of samples.
type Summary struct {
	N        int
	Median   time.Duration
	P90      time.Duration
	Min, Max time.Duration
}

// Summarize returns the median (mean of the two middle samples for even n) and the nearest-rank p90.
// An empty series gives the zero Summary. The input is not reordered.
func Summarize(samples []time.Duration) Summary {
	n := len(samples)
	if n == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Median: med, P90: s[nearestRank(n, 90)], Min: s[0], Max: s[n-1]}
}

// nearestRank is the 0-based index of the p-th percentile of n sorted samples: ceil(p/100*n)-1.
func nearestRank(n, p int) int {
	r := (p*n + 99) / 100
	if r < 1 {
		r = 1
	}
	return r - 1
}

// MedianInt is the median of a series of byte counts (lower middle for even n); 0 when empty.
// The input is not reordered.
func MedianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Ratio formats a/b as "1.23x", or "n/a" when either side is missing.
func Ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Delta formats a-b in milliseconds with a sign, or "n/a" when either side is missing.
func Delta(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.2f", float64(a-b)/float64(time.Millisecond))
}

// MS formats d in milliseconds with two decimals, the resolution that matters for a container command.
func MS(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// KiB formats a byte count in whole KiB.
func KiB(b int64) string {
	return fmt.Sprintf("%d", b/1024)
}

// Table writes rows aligned in columns, the first row being the header.
func Table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}
