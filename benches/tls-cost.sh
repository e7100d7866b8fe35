#!/usr/bin/env bash
# What TLS costs a Raft cluster: the same 3-node cluster with TLS everywhere (client TLS,
# peer mutual TLS) and with --insecure, alternating, several rounds, in one run.
#
#   cargo build --release -p auth-backend --bin auth-backend --example loadgen
#   benches/tls-cost.sh [ROUNDS] [SECONDS]
#
# Prints one line per run and, at the end, the median TLS/plaintext ratio per load.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SECS=${2:-10}
BIN=target/release/auth-backend
LOADGEN=target/release/examples/loadgen
BASE=28051 # below the ephemeral port range (32768 and up), clear of the other scripts
E=127.0.0.1:28051,127.0.0.1:28061,127.0.0.1:28071
[ -x "$BIN" ] && [ -x "$LOADGEN" ] || {
    echo "build first: cargo build --release -p auth-backend --bin auth-backend --example loadgen" >&2
    exit 2
}

results=$(mktemp)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

run_cluster() { # mode: tls | plain
    local mode=$1 dir
    dir=$(mktemp -d /tmp/tls-cost.XXXXXX)
    local flags=()
    [ "$mode" = plain ] && flags=(--insecure)
    "$BIN" cluster --nodes 3 --data-dir "$dir" --base-port $BASE "${flags[@]}" \
        -- --argon2-memory-kib 64 --argon2-iterations 1 --throttle false >"$dir/cluster.out" 2>&1 &
    pid=$!
    local tls=()
    [ "$mode" = tls ] && tls=(--cacert "$dir/tls/ca.pem")
    # Wait (bounded) until a registration succeeds: a leader is elected and serving.
    local ok=0
    for _ in $(seq 1 100); do
        if "$LOADGEN" --endpoints "$E" "${tls[@]}" --op register -c 1 -d 1 2>/dev/null |
            grep -q ' ok=[1-9]'; then ok=1; break; fi
    done
    [ $ok = 1 ] || { echo "cluster ($mode) did not come up; see $dir" >&2; exit 1; }
    for load in "register 1" "register 64" "verify 64"; do
        set -- $load
        line=$("$LOADGEN" --endpoints "$E" "${tls[@]}" --op "$1" -c "$2" -d "$SECS")
        echo "$mode $line"
        rate=$(sed -E 's/.* rate=([0-9]+)\/s.*/\1/' <<<"$line")
        p50=$(sed -E 's/.* p50=([0-9.]+)ms.*/\1/' <<<"$line")
        echo "$mode $1-c$2 $rate $p50" >>"$results"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    rm -rf "$dir"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r"
    if [ $((r % 2)) = 1 ]; then run_cluster tls; run_cluster plain; else run_cluster plain; run_cluster tls; fi
done

echo "== median TLS / plaintext (throughput ratio; p50 latency ratio)"
for load in register-c1 register-c64 verify-c64; do
    med() { grep "^$1 $load " "$results" | awk '{print $'"$2"'}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    tr=$(med tls 3); pr=$(med plain 3); tl=$(med tls 4); pl=$(med plain 4)
    awk -v l="$load" -v tr="$tr" -v pr="$pr" -v tl="$tl" -v pl="$pl" 'BEGIN {
        printf "%-13s rate tls %6d/s plain %6d/s  ratio %.2f (cost %4.1f%%)   p50 tls %.2fms plain %.2fms ratio %.2f\n",
            l, tr, pr, tr/pr, (1-tr/pr)*100, tl, pl, tl/pl }'
done
