// Package benchutil holds what the benchmark commands under bench/ share: their main and root check,
// summaries of timing series (median, nearest-rank p90), the ratio and delta columns of their reports,
// aligned tables, the one-line host description, and on Linux the cleanup helpers that reap orphans and
// remove a run's cgroups. It never asserts timings; the commands only report them.
package benchutil
