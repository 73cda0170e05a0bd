package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// summary is what the report shows for one series of samples.
type summary struct {
	N        int
	Median   time.Duration
	P90      time.Duration
	Min, Max time.Duration
}

// summarize returns the median (mean of the two middle samples for even n) and the nearest-rank p90.
// An empty series gives the zero summary.
func summarize(samples []time.Duration) summary {
	n := len(samples)
	if n == 0 {
		return summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{N: n, Median: med, P90: s[nearestRank(n, 90)], Min: s[0], Max: s[n-1]}
}

// nearestRank is the 0-based index of the p-th percentile of n sorted samples: ceil(p/100*n)-1.
func nearestRank(n, p int) int {
	r := (p*n + 99) / 100
	if r < 1 {
		r = 1
	}
	return r - 1
}

// ratio formats a/b as "1.23x", or "n/a" when either side is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// delta formats a-b in milliseconds with a sign, or "n/a" when either side is missing.
func delta(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.2f", float64(a-b)/float64(time.Millisecond))
}

// ms formats d in milliseconds with two decimals, the resolution that matters for a lifecycle.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// table writes rows aligned in columns, the first row being the header.
func table(w io.Writer, rows [][]string) error {
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
