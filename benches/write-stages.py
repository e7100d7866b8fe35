#!/usr/bin/env python3
"""Where a write's time goes, stage by stage (issue 12).

Starts `auth-backend cluster --insecure --metrics` (cheap hash, as in
benches/compare-etcd.sh), then for each target, a follower (the write is forwarded)
and the leader, runs `loadgen --op register` (or --op) against that node alone and reads every
node's /metrics before and after. Prints, per stage, the mean time and how many times
it ran per write, on the leader and on the followers:

    client          loadgen's mean latency (client to node and back, all included)
    grpc            the node's gRPC handler, request to response headers
    queue           a command waiting in a batcher for its batch to leave
    forward         follower: forward of a batch to the leader, round trip
    forward_serve   leader: serving a forwarded batch (queue again, propose, commit, apply)
    commit          leader: proposal to commit and apply (auth_raft_commit_seconds)
    append          leader: its own entries into the log, no fsync
    flush           leader: the flusher thread's fsync of those entries
    replicate       leader: AppendEntries with entries to one follower, round trip
    follower_append follower: serving that AppendEntries (decode, append, fsync)
    append_sync     follower: the log append with fsync, inside follower_append
    wait_durable    any node: apply waiting for its own disk
    apply           any node: the state machine applying entries
    purge           any node: compacting the log after a snapshot (writes wait for it)

Build first (from the repository root):

    cargo build --release -p auth-backend -p auth-sdk --bin auth-backend --example loadgen

Run (CARGO_TARGET_DIR is honoured):

    benches/write-stages.py [--nodes 3] [--secs 10] [--clients 1] [--rounds 1] [--op register]
"""

import argparse
import os
import re
import subprocess
import urllib.request

from cluster_run import Cluster

BASE = 31251  # below the ephemeral port range, clear of compare-etcd.sh's


def scrape(url, token):
    """{(metric, labels, 'sum'|'count'): value} for the histograms we read."""
    out = {}
    req = urllib.request.Request(url, headers={'Authorization': f'Bearer {token}'})
    with urllib.request.urlopen(req, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('#'):
                continue
            m = re.match(r'^([a-z_]+)_(sum|count)(\{[^}]*\})? (\S+)$', line)
            if not m:
                continue
            name, kind, labels, value = m.groups()
            if not (name.startswith('auth_raft_') or name == 'auth_grpc_request_duration_seconds'):
                continue
            out[(name, labels or '', kind)] = float(value)
    return out


# The gRPC method whose handler time is the `grpc` stage (loadgen's op, capitalised:
# Register, Refresh).
METHOD = 'Register'


def stage_name(name, labels):
    if name == 'auth_raft_write_stage_seconds':
        return re.search(r'stage="([^"]+)"', labels).group(1)
    if name == 'auth_raft_commit_seconds':
        return 'commit'
    if name == 'auth_grpc_request_duration_seconds' and METHOD in labels:
        return 'grpc'
    return None


def deltas(before, after):
    """{stage: (sum seconds, count)} from two scrapes of one node."""
    out = {}
    for (name, labels, kind), v in after.items():
        if kind != 'count':
            continue
        stage = stage_name(name, labels)
        if stage is None:
            continue
        n = v - before.get((name, labels, 'count'), 0.0)
        s = after[(name, labels, 'sum')] - before.get((name, labels, 'sum'), 0.0)
        if n > 0:
            out[stage] = (s, n)
    return out


ORDER = ['client', 'grpc', 'queue', 'forward', 'forward_serve', 'commit', 'append', 'flush',
         'replicate', 'follower_append', 'append_sync', 'wait_durable', 'apply', 'purge']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nodes', type=int, default=3)
    ap.add_argument('--secs', type=int, default=10)
    ap.add_argument('--clients', type=int, default=1)
    ap.add_argument('--op', default='register', help="loadgen's --op (register, refresh, ...)")
    ap.add_argument('--rounds', type=int, default=1)
    args = ap.parse_args()
    global METHOD
    METHOD = args.op.capitalize()
    with Cluster(args.nodes, BASE, metrics=True) as c:
        leader, endpoints, metrics, token = c.leader, c.endpoints, c.metrics, c.token
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                              text=True).stdout.strip()
        print(f'ours {head}, {args.nodes} nodes, leader {leader}, {args.op} -c {args.clients}, '
              f'{args.secs}s x {args.rounds} rounds, {os.cpu_count()} cores')
        follower = next(i for i in range(1, args.nodes + 1) if i != leader)
        for r in range(args.rounds):
            for label, node in (('forwarded (client at a follower)', follower),
                                ('direct (client at the leader)', leader)):
                before = [scrape(u, token) for u in metrics]
                out = subprocess.run([c.loadgen, '--endpoints', endpoints[node - 1], '--op',
                                      args.op, '-c', str(args.clients), '-d', str(args.secs)],
                                     capture_output=True, text=True, check=True).stdout.strip()
                after = [scrape(u, token) for u in metrics]
                f = dict(kv.split('=', 1) for kv in out.split())
                ok = int(f['ok'])
                print(f'\n== round {r + 1}: {label}: {out}')
                rows = {i + 1: deltas(b, a) for i, (b, a) in enumerate(zip(before, after))}
                for i, d in rows.items():
                    d['client'] = (float(f['mean'].rstrip('ms')) / 1000 * ok, ok) if i == node else None
                print(f'{"stage":<16} {"on":<9} {"mean ms":>8} {"per write":>9}')
                for stage in ORDER:
                    for i in sorted(rows):
                        v = rows[i].get(stage)
                        if not v or ok == 0:
                            continue
                        s, n = v
                        role = 'leader' if i == leader else f'node {i}'
                        print(f'{stage:<16} {role:<9} {1000 * s / n:8.3f} {n / ok:9.2f}')


if __name__ == '__main__':
    main()
