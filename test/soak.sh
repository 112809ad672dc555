#!/usr/bin/env bash
# Runs the Python suite RUNS times in a row (default 3) while the JavaScript suite runs over and
# over beside it, so that every test meets a loaded machine: a bound or a wait that only holds on
# an idle one fails here. Stops at the first failing run. Run test/run_all.sh once first (installs).
# Usage (from anywhere): bash test/soak.sh [RUNS]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
logs=$(mktemp -d -t igor-soak-XXXX)

# The load: the JS suite in a loop, in its own process group so that it can be stopped whole.
setsid bash -c '
    n=0
    while :; do
        n=$((n + 1))
        if npm --prefix clients/js test >"$0/js-$n.log" 2>&1; then echo pass >>"$0/js-results"
        else echo "fail js-$n.log" >>"$0/js-results"; fi
    done' "$logs" &
load=$!
trap 'kill -- -"$load" 2>/dev/null' EXIT

status=0
for run in $(seq 1 "$runs"); do
    started=$(date +%s)
    python3 -m pytest test -q -p no:cacheprovider >"$logs/py-$run.log" 2>&1
    status=$?
    took=$(($(date +%s) - started))
    read -r load1 _ </proc/loadavg
    echo "run $run/$runs: $(tail -n 1 "$logs/py-$run.log") (${took} s, load average $load1)"
    [ "$status" = 0 ] || break
done

beside=$(wc -l <"$logs/js-results" 2>/dev/null || echo 0)
failed=$(grep -c '^fail' "$logs/js-results" 2>/dev/null || true)
echo "beside: ${beside} JS suite runs finished, ${failed:-0} of them failed; logs in $logs"
exit "$status"
