#!/usr/bin/env bash
# conformance/run.sh [-k KNOWN_FILE] [KNAST_BINARY] [TEST_GLOB]
#
# Runs the OCI runtime-tools validation suite against runc and against knast on
# this machine, through the team harness ../shared/conformance/run.sh (it fetches
# and builds runtime-tools through the Go module proxy, runs each test file under
# a timeout and prints one TAP line per test file plus "N passed, M failed, K
# skipped"). Then compares the two runs test file by test file.
#
# KNAST_BINARY  knast to test (default: built from this tree into $KNAST_CONFORMANCE_DIR/knast)
# TEST_GLOB     test names, comma-separated bash patterns (default '*')
# -k FILE       known differences: test files allowed to fail for knast although
#               runc passes them, one per line as "name  reason" (# comments);
#               default conformance/known-differences.txt
#
# Environment (optional):
#   BASELINE_RUNTIME   runtime to compare with (default runc)
#   BASELINE_SUMMARY   reuse this run.sh summary instead of running the baseline
#   CONFORMANCE_OUT    where the two summaries go (default $KNAST_CONFORMANCE_DIR/compare)
#   SHARED_CONFORMANCE the harness dir (default ../shared/conformance next to the repo)
#   and run.sh's own knobs (TEST_TIMEOUT, KNAST_CONFORMANCE_DIR=/tmp/knast-conformance, ...)
#
# Exit status: 0 when every test file the baseline passes also passes for knast
# (or is a known difference); 1 on a regression; 2 on a harness error.
# The closing line counts test files: "conformance: P passed, F failed", where
# failed are the regressions against the baseline.

set -uo pipefail

die() { printf 'conformance: error: %s\n' "$*" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd) || die "cannot find the repository"
KNOWN=$REPO/conformance/known-differences.txt
while getopts 'k:h' opt; do
	case $opt in
	k) KNOWN=$OPTARG ;;
	*) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -le 2 ]] || die "usage: $0 [-k KNOWN_FILE] [KNAST_BINARY] [TEST_GLOB]"
KNAST=${1:-}
GLOB=${2:-*}
BASELINE_RUNTIME=${BASELINE_RUNTIME:-runc}
# Builds and summaries stay out of the work tree, next to the harness's own cache.
WORK=${KNAST_CONFORMANCE_DIR:-/tmp/knast-conformance}
OUT=${CONFORMANCE_OUT:-$WORK/compare}
SHARED=${SHARED_CONFORMANCE:-$REPO/../shared/conformance}
HARNESS=$SHARED/run.sh

[[ -f $HARNESS ]] || die "harness not found: $HARNESS (set SHARED_CONFORMANCE to the shared/conformance dir)"
[[ -f $KNOWN ]] || die "known-differences file not found: $KNOWN"
mkdir -p "$OUT" || die "cannot create $OUT"

if [[ -z $KNAST ]]; then
	KNAST=$WORK/knast
	echo "conformance: building knast into $KNAST"
	(cd "$REPO" && CGO_ENABLED=1 go build -o "$KNAST" ./cmd/knast) || die "go build ./cmd/knast failed"
fi
KNAST=$(readlink -f -- "$KNAST") && [[ -x $KNAST ]] || die "knast binary not executable: ${1:-$KNAST}"

# run_suite NAME RUNTIME: runs the harness, keeps its summary as $OUT/NAME.txt.
# The harness exits 1 whenever any assertion fails (runc's too), so only 2 is fatal.
run_suite() {
	local name=$1 rt=$2 rc
	echo "conformance: === $name ($rt) ==="
	SUMMARY_FILE=$OUT/$name.txt bash "$HARNESS" "$rt" "$GLOB"
	rc=$?
	[[ $rc -le 1 && -s $OUT/$name.txt ]] || die "the harness failed for $rt (exit $rc)"
}

if [[ -n ${BASELINE_SUMMARY:-} ]]; then
	[[ -f $BASELINE_SUMMARY ]] || die "BASELINE_SUMMARY not found: $BASELINE_SUMMARY"
	cp "$BASELINE_SUMMARY" "$OUT/baseline.txt" || die "cannot copy $BASELINE_SUMMARY"
	echo "conformance: baseline from $BASELINE_SUMMARY"
else
	run_suite baseline "$BASELINE_RUNTIME"
fi
run_suite knast "$KNAST"

echo "conformance: === knast compared with $BASELINE_RUNTIME (test files) ==="
# Verdict per test file from both summaries; the known list as "name reason".
awk -v known_file="$KNOWN" -v glob="$GLOB" '
	function verdict(line) { return (line ~ /^not ok/) ? "FAIL" : "pass" }
	function name_of(line,    n) { n = line; sub(/^(not )?ok [0-9]+ - /, "", n); sub(/[: ].*/, "", n); return n }
	BEGIN {
		while ((getline l < known_file) > 0) {
			sub(/#.*/, "", l)
			if (split(l, f, /[ \t]+/) == 0 || f[1] == "") continue
			r = l; sub(/^[ \t]*[^ \t]+[ \t]*/, "", r)
			known[f[1]] = r
		}
	}
	/^(not )?ok [0-9]+ - / {
		t = name_of($0)
		if (FILENAME == ARGV[1]) { base[t] = verdict($0) } else { new[t] = verdict($0); order[++n] = t }
	}
	END {
		for (i = 1; i <= n; i++) {
			t = order[i]
			if (!(t in base)) { printf "%-36s knast %-4s  (not in the baseline)\n", t, new[t]; continue }
			if (base[t] == "pass" && new[t] == "FAIL") {
				if (t in known) { printf "%-36s known difference: %s\n", t, known[t]; kd++ }
				else { printf "%-36s REGRESSION: runc passes, knast fails\n", t; bad++ }
			} else if (base[t] == "FAIL" && new[t] == "pass") {
				printf "%-36s better: knast passes, runc fails\n", t; better++
			} else if (t in known && new[t] == "pass") {
				printf "%-36s listed as a known difference but passes now: drop it from the list\n", t
			}
			if (new[t] == "pass") knast_pass++
		}
		# A glob runs part of the suite; a reused full baseline then has more tests.
		if (glob == "*") for (t in base) if (!(t in new)) { printf "%-36s missing from the knast run\n", t; bad++ }
		printf "# test files: %d; knast passes %d; regressions %d, known differences %d, better than the baseline %d\n",
			n, knast_pass, bad, kd, better
		printf "conformance: %d passed, %d failed\n", n - bad, bad
		exit (bad > 0)
	}
' "$OUT/baseline.txt" "$OUT/knast.txt"
