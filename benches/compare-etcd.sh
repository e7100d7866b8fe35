#!/usr/bin/env bash
# Our Raft cluster against etcd 3.4, side by side on this machine (issue 12): N members
# on 127.0.0.1 each, plaintext (ours with --insecure, etcd over http://), default timing
# on both, fsync on both, a fresh data dir under /tmp for every run, one system running
# at a time. Several rounds, alternating which system goes first (odd rounds etcd, even
# rounds ours), for each cluster size.
#
# Build (etcd-client's build script needs protoc: the vendored one from our tree):
#
#   export PROTOC="$(dirname "$(cargo metadata --format-version 1 | python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="protoc-bin-vendored-linux-x86_64"][0])')")/bin/protoc"
#   cargo build --release -p auth-backend -p auth-sdk --features auth-sdk/etcd-bench --bin auth-backend --example loadgen
#
# Run (CARGO_TARGET_DIR is honoured; NODES defaults to "3 5"):
#
#   benches/compare-etcd.sh [ROUNDS] [SECONDS] [NODES...]
#
# Loads, etcd vs ours (examples/loadgen.rs, the same closed loop and output line,
# round-robin over all members):
#   write-c1   put -c 1                   vs  register -c 1
#   write-c64  put -c 64                  vs  register -c 64
#   rotate-c1  (etcd's write-c1)          vs  refresh -c 1
#   rotate-c64 (etcd's write-c64)         vs  refresh -c 64
#   read-c64   get -c 64 (linearizable)   vs  verify -c 64 (linearizable session read)
# A put carries a 300-byte value, about one of our user records; a registration is more
# than a put (an auth RPC, a cheap argon2 hash here: --argon2-memory-kib 64
# --argon2-iterations 1, a uniqueness check in the state machine). A refresh-token
# rotation is our write without a password hash (a session read, then one replicated
# command that replaces the session's token), compared with the same run's puts.
#
# Prints every loadgen line and, per cluster size and load, the medians and the ratios
# ours/etcd (throughput, and p50 latency).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SECS=${2:-10}
shift $(($# < 2 ? $# : 2))
NODES=("$@")
[ ${#NODES[@]} -gt 0 ] || NODES=(3 5)
T=${CARGO_TARGET_DIR:-target}
BIN=$T/release/auth-backend
LOADGEN=$T/release/examples/loadgen
# Every port below Linux's ephemeral range (32768-60999 by default): there, an outgoing
# connection's local port can take a node's port first (seen: "Address already in
# use" for a peer listener, and a 3-node run that silently had 2 nodes).
BASE=31051 # ours: node i (1-based) serves clients on BASE + 10(i-1), peers on the next port

for n in "${NODES[@]}"; do
    [[ $n =~ ^[1-9]$ ]] || { echo "NODES: 1 to 9 members each (etcd ports 2i379/2i380), not $n" >&2; exit 2; }
done

if ! command -v etcd >/dev/null; then
    echo "== installing etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends etcd-server
fi
build_hint() {
    echo "build first (from the repository root):" >&2
    sed -n '/^#   export PROTOC=/,/^#   cargo build/s/^#   //p' "$0" >&2
    exit 2
}
if [ ! -x "$BIN" ] || [ ! -x "$LOADGEN" ]; then build_hint; fi
# A loadgen without the etcd-bench feature refuses --target etcd; with it, zero workers
# for zero seconds connect to nothing and print one line.
"$LOADGEN" --target etcd --op put -c 0 -d 0 --endpoints 127.0.0.1:1 >/dev/null 2>&1 || build_hint

# Share of the CPU busy over one second (every process): the figures are only
# comparable on an otherwise idle machine.
cpu_busy() {
    local a b
    read -ra a < <(head -n 1 /proc/stat)
    sleep 1
    read -ra b < <(head -n 1 /proc/stat)
    awk -v u=$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8])) \
        -v i=$((b[4] + b[5] - a[4] - a[5])) 'BEGIN {printf "%.0f", (u + i > 0 ? 100 * u / (u + i) : 0)}'
}
# Waits (up to 2 minutes) for the machine to be idle; then warns if it still is not.
idle_check() { # when
    local busy
    for _ in $(seq 1 60); do
        busy=$(cpu_busy)
        [ "$busy" -gt 10 ] || return 0
        sleep 1
    done
    echo "warning: machine ${busy}% busy $1 (nothing of this script running): figures will be low and noisy" >&2
    ps -eo pcpu=,comm= --sort=-pcpu | head -n 3 | awk '{print "    " $0}' >&2
}

echo "etcd: $(etcd --version | head -1); ours: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
echo "rounds $ROUNDS, ${SECS}s per load, nodes ${NODES[*]}, $(nproc) cores"

results=$(mktemp /tmp/compare-etcd.results.XXXXXX)
pids=()   # processes of the running system (etcd members; our supervisor and its nodes)
dir=      # the running system's data dir and logs
keep=0    # 1: a system failed to start; leave its dir for a look

# Stops every process in $pids: SIGTERM, then (after 20 s) SIGKILL.
stop_all() {
    [ ${#pids[@]} -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    local alive
    for _ in $(seq 1 200); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    if [ $alive = 1 ]; then
        echo "warning: still running after 20 s, SIGKILL: ${pids[*]}" >&2
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    pids=()
}
cleanup() {
    stop_all
    if [ -n "$dir" ] && [ $keep = 0 ]; then rm -rf "$dir"; fi
    rm -f "$results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops the run (its data dir kept) unless every process of the system still runs: a
# cluster short of a member still answers but measures something else.
check_alive() { # system when
    local p
    for p in "${pids[@]}"; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "$1: pid $p exited $2; logs in $dir" >&2
            tail -n 5 "$dir"/*.log "$dir"/*.out 2>/dev/null >&2 || true
            keep=1
            exit 1
        fi
    done
}

# Refuses to start while something holds one of the ports (bounded wait for it to go).
# TIME-WAIT left by the previous run does not count: both systems bind with SO_REUSEADDR.
ports_free() { # ports...
    local p
    for _ in $(seq 1 30); do
        for p in "$@"; do
            [ -z "$(ss -Htan exclude time-wait "( sport = :$p )" 2>/dev/null)" ] || { sleep 1; continue 2; }
        done
        return 0
    done
    echo "port $p still in use after 30 s:" >&2
    ss -tanp exclude time-wait "( sport = :$p )" >&2 || true
    exit 1
}

# Bounded wait (about a minute) until one write succeeds: a leader is elected and serving.
wait_ready() { # system endpoints loadgen-args...
    local sys=$1 ends=$2
    shift 2
    for _ in $(seq 1 60); do
        check_alive "$sys" "while starting"
        if "$LOADGEN" --endpoints "$ends" "$@" -c 1 -d 1 --timeout-ms 1000 2>/dev/null | grep -q ' ok=[1-9]'; then
            sleep 1
            check_alive "$sys" "while starting"
            return 0
        fi
    done
    echo "$sys did not come up; logs in $dir" >&2
    keep=1
    exit 1
}

# Runs the loads; appends "system nodes load rate p50 p99 errors" to $results.
measure() { # system nodes endpoints (load-name loadgen-op clients)...
    local sys=$1 n=$2 ends=$3 line
    shift 3
    local targ=()
    [ "$sys" = etcd ] && targ=(--target etcd)
    while [ $# -gt 0 ]; do
        # stdout: the one result line; stderr: failed calls counted by kind.
        line=$("$LOADGEN" --endpoints "$ends" "${targ[@]}" --op "$2" -c "$3" -d "$SECS" 2>"$dir/loadgen.err")
        printf '%-4s n=%s %-10s %s\n' "$sys" "$n" "$1" "$line"
        cat "$dir/loadgen.err"
        awk -v s="$sys" -v n="$n" -v l="$1" '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            sub(/\/s$/, "", f["rate"]); sub(/ms$/, "", f["p50"]); sub(/ms$/, "", f["p99"])
            print s, n, l, f["rate"], f["p50"], f["p99"], f["err"] }' <<<"$line" >>"$results"
        shift 3
    done
}

# Warnings and errors in a system's logs, counted by message: up to the end of the
# loads (snapshot in run-file), then how many more the shutdown added.
log_summary() { # label run-file log-files... -- extract-command...
    local label=$1 run=$2 during after
    shift 2
    local logs=()
    while [ "$1" != -- ]; do logs+=("$1"); shift; done
    shift
    during=$("$@" <"$run" | sort | uniq -c | sort -rn)
    after=$(($(cat "${logs[@]}" | "$@" | wc -l) - $("$@" <"$run" | wc -l)))
    if [ -n "$during" ]; then
        echo "$label warnings/errors logged (start and loads), count and message:"
        head -n 8 <<<"$during" | awk '{print "    " $0}'
        [ "$(wc -l <<<"$during")" -le 8 ] || echo "    ... $(($(wc -l <<<"$during") - 8)) more kinds"
    fi
    [ "$after" = 0 ] || echo "$label: $after more while stopping"
}

run_etcd() { # nodes
    local n=$1 i cluster="" ends=""
    dir=$(mktemp -d /tmp/compare-etcd.etcd.XXXXXX)
    for i in $(seq 1 "$n"); do
        cluster+="${cluster:+,}e$i=http://127.0.0.1:2${i}380"
        ends+="${ends:+,}127.0.0.1:2${i}379"
        ports_free "2${i}379" "2${i}380"
    done
    for i in $(seq 1 "$n"); do
        etcd --name "e$i" --data-dir "$dir/e$i" \
            --listen-client-urls "http://127.0.0.1:2${i}379" \
            --advertise-client-urls "http://127.0.0.1:2${i}379" \
            --listen-peer-urls "http://127.0.0.1:2${i}380" \
            --initial-advertise-peer-urls "http://127.0.0.1:2${i}380" \
            --initial-cluster "$cluster" --initial-cluster-token "cmp-$(basename "$dir")" \
            --initial-cluster-state new --log-level warn --logger zap >"$dir/e$i.log" 2>&1 &
        pids+=($!)
    done
    wait_ready etcd "$ends" --target etcd --op put
    measure etcd "$n" "$ends" write-c1 put 1 write-c64 put 64 read-c64 get 64
    check_alive etcd "during the loads"
    cat "$dir"/e*.log >"$dir/run.txt"
    stop_all
    # etcd logs at warn and above; its JSON lines name the message in "msg".
    log_summary "etcd n=$n" "$dir/run.txt" "$dir"/e*.log -- sed -nE 's/.*"level":"([a-z]+)".*"msg":"([^"]*)".*/\1 \2/p'
    rm -rf "$dir"; dir=
}

run_ours() { # nodes
    local n=$1 i ends=""
    dir=$(mktemp -d /tmp/compare-etcd.ours.XXXXXX)
    for i in $(seq 0 $((n - 1))); do
        ends+="${ends:+,}127.0.0.1:$((BASE + 10 * i))"
        ports_free $((BASE + 10 * i)) $((BASE + 10 * i + 1))
    done
    "$BIN" cluster --nodes "$n" --data-dir "$dir" --base-port $BASE --insecure \
        -- --argon2-memory-kib 64 --argon2-iterations 1 --throttle false >"$dir/cluster.out" 2>&1 &
    pids+=($!)
    # The nodes' pids (the supervisor's table), so that cleanup reaches them even if the
    # supervisor is gone.
    local table=""
    for _ in $(seq 1 100); do
        table=$(awk '$3 ~ /^127\.0\.0\.1:/ && $2 ~ /^[0-9]+$/ {print $2}' "$dir/cluster.out")
        [ "$(wc -w <<<"$table")" -ge "$n" ] && break
        sleep 0.1
    done
    for p in $table; do pids+=("$p"); done
    wait_ready ours "$ends" --op register
    measure ours "$n" "$ends" write-c1 register 1 write-c64 register 64 \
        rotate-c1 refresh 1 rotate-c64 refresh 64 read-c64 verify 64
    check_alive ours "during the loads"
    cat "$dir"/node-*.log >"$dir/run.txt"
    stop_all
    # tracing's text lines: time, level, target: message. The warnings every --insecure
    # node logs at start are left out.
    log_summary "ours n=$n" "$dir/run.txt" "$dir"/node-*.log -- sed -nE \
        '/--insecure|has no TLS/d; s/^[^ ]+ +(WARN|ERROR) ([^ ]+) (.{0,100}).*/\1 \2 \3/p'
    rm -rf "$dir"; dir=
}

for n in "${NODES[@]}"; do
    for r in $(seq 1 "$ROUNDS"); do
        echo "== $n nodes, round $r"
        if [ $((r % 2)) = 1 ]; then order=(etcd ours); else order=(ours etcd); fi
        for sys in "${order[@]}"; do
            idle_check "before $sys, $n nodes, round $r"
            "run_$sys" "$n"
        done
    done
done

# Median over the rounds of a column of $results (4 rate, 5 p50, 6 p99): the middle
# value, or the mean of the two middle ones.
med() { # system nodes load column
    awk -v s="$1" -v n="$2" -v l="$3" -v c="$4" '$1 == s && $2 == n && $3 == l {print $c}' "$results" |
        sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
sum_err() { awk -v s="$1" -v n="$2" -v l="$3" '$1 == s && $2 == n && $3 == l {e += $7} END {print e + 0}' "$results"; }

echo "== medians over $ROUNDS rounds; ratio = ours / etcd (rate: >1 is ours faster; p50: <1 is ours faster)"
printf '%-5s %-10s | %9s %9s %6s | %8s %8s %6s | %8s %8s | %s\n' \
    nodes load "etcd/s" "ours/s" ratio "etcd p50" "ours p50" ratio "etcd p99" "ours p99" "errors etcd/ours"
for n in "${NODES[@]}"; do
    for load in write-c1 write-c64 rotate-c1 rotate-c64 read-c64; do
        base=${load/rotate/write} # etcd's side of a rotation is its put
        awk -v n="$n" -v l="$load" -v er="$(med etcd "$n" "$base" 4)" -v or="$(med ours "$n" "$load" 4)" \
            -v ep="$(med etcd "$n" "$base" 5)" -v op="$(med ours "$n" "$load" 5)" \
            -v e9="$(med etcd "$n" "$base" 6)" -v o9="$(med ours "$n" "$load" 6)" \
            -v ee="$(sum_err etcd "$n" "$base")" -v oe="$(sum_err ours "$n" "$load")" 'BEGIN {
            printf "%-5s %-10s | %9.0f %9.0f %6.2f | %6.2fms %6.2fms %6.2f | %6.2fms %6.2fms | %s/%s\n",
                n, l, er, or, (er > 0 ? or / er : 0), ep, op, (ep > 0 ? op / ep : 0), e9, o9, ee, oe }'
    done
done
