#!/usr/bin/env python3
"""Where the CPU of a loaded cluster goes (issue 12): a whole-machine profile.

Starts `auth-backend cluster --insecure` (cheap hash, as in benches/compare-etcd.sh),
runs `loadgen --op register -c CLIENTS` round-robin over every node under
`perf record -a -g` (every CPU, kernel stacks included), then classifies each sample:

- by process: each node (the leader marked), loadgen, anything else;
- by thread kind: runtime workers, hashing threads, fsync/flusher threads, ...;
- by what it was doing: for kernel samples, the system call or soft interrupt on the
  stack (socket send, socket receive, futex, fsync, epoll, ...); for user samples, the
  library of the leaf function (argon2, allocator, memcpy, protobuf, h2/hyper/tonic,
  tokio, openraft, redb, our crates).

Prints the load's result line, CPU busy per write (microseconds of CPU, all processes,
per completed write) and the shares. Needs `perf` (apt-get install linux-perf) and root
(or kernel.perf_event_paranoid <= -1).

Build first (from the repository root):

    cargo build --release -p auth-backend -p auth-sdk --bin auth-backend --example loadgen

Run (CARGO_TARGET_DIR is honoured):

    benches/profile-writes.py [--nodes 3] [--secs 10] [--clients 64] [--op register]
"""

import argparse
import collections
import os
import re
import subprocess
import tempfile

from cluster_run import Cluster

BASE = 31451  # below the ephemeral port range, clear of the other scripts'
FREQ = 499

# Kernel: the first of these found walking up from the leaf names the activity.
KERNEL = [
    (re.compile(r'net_rx_action|__napi_poll|process_backlog'), 'kernel: network receive (softirq)'),
    (re.compile(r'sock_write_iter|tcp_sendmsg|__sys_sendto|__sys_sendmsg'), 'kernel: socket send'),
    (re.compile(r'sock_read_iter|tcp_recvmsg|__sys_recvfrom|__sys_recvmsg'), 'kernel: socket receive'),
    (re.compile(r'__x64_sys_futex'), 'kernel: futex (wake/wait)'),
    (re.compile(r'__x64_sys_fdatasync|__x64_sys_fsync|ext4_sync_file'), 'kernel: fsync'),
    (re.compile(r'__x64_sys_(p?write|pwrite64)|ext4_buffered_write|ext4_file_write'), 'kernel: file write'),
    (re.compile(r'__x64_sys_(p?read|pread64)|filemap_read'), 'kernel: file read'),
    (re.compile(r'__x64_sys_epoll_wait|__x64_sys_epoll_pwait'), 'kernel: epoll_wait'),
    (re.compile(r'__x64_sys_sched_yield'), 'kernel: sched_yield'),
    (re.compile(r'exc_page_fault|__x64_sys_munmap|__x64_sys_mmap|__x64_sys_madvise|__x64_sys_brk'), 'kernel: memory (faults, mmap)'),
    (re.compile(r'schedule|finish_task_switch|irqentry_exit_to_user_mode|__x64_sys_clone'), 'kernel: scheduling'),
    (re.compile(r'__x64_sys_(\w+)'), None),  # any other system call: named after it
]
# User space, by the leaf's symbol (or library).
USER = [
    (re.compile(r'argon2|blake2'), 'user: argon2id (password hash)'),
    (re.compile(r'malloc|free|_int_|unlink_chunk|cfree|__rdl_|__rust_alloc|__rust_dealloc|realloc'), 'user: allocator'),
    (re.compile(r'memmove|memcpy|memset|memcmp'), 'user: memcpy/memset/memcmp'),
    (re.compile(r'prost|encoding::|encoded_len|Message'), 'user: protobuf (prost)'),
    (re.compile(r'\bh2::|hyper|tonic|http::|tower'), 'user: HTTP/2, gRPC (h2, hyper, tonic)'),
    (re.compile(r'tokio::|mio::'), 'user: tokio runtime'),
    (re.compile(r'openraft'), 'user: openraft'),
    (re.compile(r'redb'), 'user: redb'),
    (re.compile(r'auth_|loadgen'), 'user: our crates'),
    (re.compile(r'unicode|confusable'), 'user: unicode (username rules)'),
    (re.compile(r'sha2|hmac|ed25519|curve25519|ring::|rand'), 'user: other crypto and randomness'),
    (re.compile(r'pthread|syscall|__lll|futex|clock_gettime|epoll'), 'user: libc (threads, syscalls)'),
]


def classify(frames):
    """frames: [(sym, dso)], leaf first."""
    sym, dso = frames[0]
    if 'kernel' in dso:
        for s, _ in frames:
            for pat, name in KERNEL:
                m = pat.search(s)
                if m:
                    return name or f'kernel: syscall {m.group(1)}'
        return 'kernel: other (interrupts, ...)'
    for pat, name in USER:
        if pat.search(sym):
            return name
    return 'user: other' if sym != '[unknown]' else 'user: unresolved'


def thread_kind(comm):
    for pat, name in ((r'tokio-rt-worker', 'runtime workers'), (r'auth-hash', 'hashing threads'),
                      (r'raft-fsync|flush', 'fsync/flusher threads'), (r'tokio-runtime|blocking', 'blocking pool')):
        if re.search(pat, comm):
            return name
    return comm


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--nodes', type=int, default=3)
    p.add_argument('--secs', type=int, default=10)
    p.add_argument('--clients', type=int, default=64)
    p.add_argument('--op', default='register')
    p.add_argument('--keep', help='keep perf.data here')
    args = p.parse_args()
    with Cluster(args.nodes, BASE) as c:
        leader, endpoints, pids = c.leader, ','.join(c.endpoints), c.pids
        # Warm up (connections, first allocations), then the measured run.
        subprocess.run([c.loadgen, '--endpoints', endpoints, '--op', args.op,
                        '-c', str(args.clients), '-d', '2'], capture_output=True, check=True)
        with tempfile.TemporaryDirectory() as tmp:
            perf_data = args.keep or os.path.join(tmp, 'perf.data')
            out = subprocess.run(['perf', 'record', '-F', str(FREQ), '-a', '-g', '-o', perf_data,
                                  '--', c.loadgen, '--endpoints', endpoints, '--op', args.op,
                                  '-c', str(args.clients), '-d', str(args.secs)],
                                 capture_output=True, text=True, check=True)
            script = subprocess.run(['perf', 'script', '-i', perf_data, '-F',
                                     'comm,pid,tid,ip,sym,dso'],
                                    capture_output=True, text=True, check=True).stdout
    result = next(l for l in out.stdout.splitlines() if l.startswith('op='))
    ok = int(dict(kv.split('=', 1) for kv in result.split())['ok'])

    by_proc, by_kind, by_what = collections.Counter(), collections.Counter(), collections.Counter()
    busy = idle = 0
    # loadgen's runtime threads are named like the nodes' (tokio-rt-worker): its pid is
    # the one whose main thread is named loadgen.
    loadgen_pids = {int(m.group(1)) for m in re.finditer(r'^\s*loadgen\s+(\d+)/', script, re.M)}
    for block in script.split('\n\n'):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        m = re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s*$', lines[0])
        if not m:
            continue
        comm, pid = m.group(1), int(m.group(2))
        if pid == 0:
            idle += 1
            continue
        busy += 1
        frames = []
        for l in lines[1:]:
            f = re.match(r'\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$', l)
            if f:
                frames.append((f.group(1), f.group(2)))
        if not frames:
            continue
        node = pids.get(pid)
        proc = (f'node {node}' + (' (leader)' if node == leader else '')) if node else (
            'loadgen' if pid in loadgen_pids else 'other')
        by_proc[proc] += 1
        by_kind[f'{proc}: {thread_kind(comm)}'] += 1
        by_what[classify(frames)] += 1

    cpu_secs = busy / FREQ
    print(result)
    print(f'{args.nodes} nodes, {args.clients} clients, {args.secs} s; {busy} busy samples at {FREQ} Hz '
          f'({cpu_secs:.1f} CPU-s, {100 * busy / max(1, busy + idle):.0f}% of all CPUs); '
          f'{1e6 * cpu_secs / max(1, ok):.0f} µs of CPU per write')
    for title, counter in (('process', by_proc), ('thread', by_kind), ('activity', by_what)):
        print(f'\n{"by " + title:<46} {"share":>6} {"µs/write":>9}')
        for k, n in counter.most_common(24):
            print(f'{k:<46} {100 * n / busy:5.1f}% {1e6 * n / FREQ / max(1, ok):9.1f}')


if __name__ == '__main__':
    main()
