#!/bin/sh
# Runs every fuzz target of knast for a bounded time each and prints the executions per target.
#
#   hardening/fuzz.sh [SECONDS]        (default 20, or $KNAST_FUZZ_TIME)
#
# It writes "PACKAGE.TARGET EXECUTIONS" lines to $KNAST_FUZZ_SUMMARY (default
# ${TMPDIR:-/tmp}/knast-fuzz-summary), which the integration/hardening suite prints in its summary
# when KNAST_FUZZ_SUMMARY names it. A crasher fails the script; go test writes it to the package's
# testdata/fuzz/TARGET/ so that the plain `go test` run reproduces it from then on.
set -eu

cd "$(dirname "$0")/.."
secs=${1:-${KNAST_FUZZ_TIME:-20}}
summary=${KNAST_FUZZ_SUMMARY:-${TMPDIR:-/tmp}/knast-fuzz-summary}
: > "$summary"

# package target: every Fuzz function of the tree. Minimizing a new input is bounded, or a slow
# target spends its whole budget minimizing and reports almost no executions.
targets="
./internal/spec FuzzLoad
./internal/spec FuzzFromImage
./internal/image FuzzLoadArchive
./internal/image/unpack FuzzApply
./internal/image/unpack FuzzApplyEntries
./internal/build FuzzDockerfile
./internal/cni FuzzParseConfig
./internal/network FuzzParsePortMapping
"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "$targets" | while read -r pkg target; do
	[ -n "$pkg" ] || continue
	# One package may hold several targets: -run and -fuzz must each match exactly one.
	if "${GO:-go}" test -count=1 -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "${secs}s" -fuzzminimizetime 50x "$pkg" >"$log" 2>&1; then
		result=ok
	elif grep -q 'context deadline exceeded' "$log" && ! grep -q -e 'Failing input written to' -e 'panic:' "$log"; then
		# go test -fuzz can end a clean run with "context deadline exceeded" when -fuzztime expires
		# while a worker is busy (a Go fuzzing quirk): no failing input was found or written.
		result=ok
	else
		result=FAIL
	fi
	execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	execs=${execs:-0}
	printf '%-8s %-28s %-22s %10s executions\n' "$result" "$pkg" "$target" "$execs"
	echo "${pkg#./internal/}.${target} ${execs}" >> "$summary"
	if [ "$result" = FAIL ]; then
		cat "$log"
		exit 1
	fi
done || status=1
awk '{ n += $2 } END { printf "fuzz: %d targets, %d executions in total\n", NR, n }' "$summary"
exit $status
