"""A local `auth-backend cluster` for the benchmark scripts in this directory.

    with Cluster(nodes=3, base_port=31251, metrics=True) as c:
        c.leader, c.endpoints, c.metrics, c.token, c.pids, c.loadgen

Plaintext (`--insecure`) on 127.0.0.1, the cheap hash (as in compare-etcd.sh),
throttling off; binaries from `$CARGO_TARGET_DIR/release` (default `target`). The
cluster is stopped (SIGTERM to its process group, then SIGKILL) and its data dir
removed on leaving the block.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def binaries():
    """(auth-backend, loadgen) of this checkout's release build; exits if missing."""
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    target = os.environ.get('CARGO_TARGET_DIR', 'target')
    found = (os.path.join(target, 'release', 'auth-backend'),
             os.path.join(target, 'release', 'examples', 'loadgen'))
    for b in found:
        if not os.access(b, os.X_OK):
            sys.exit(f'{b} missing: build first (see the top of this script)')
    return found


class Cluster:
    def __init__(self, nodes, base_port, metrics=False, keep=False):
        self.binary, self.loadgen = binaries()
        self.nodes, self.base_port, self.with_metrics, self.keep = nodes, base_port, metrics, keep
        self.leader = self.endpoints = self.metrics = self.token = None
        self.pids = {}  # process id -> node id

    def __enter__(self):
        self.data = tempfile.mkdtemp(prefix='bench-cluster.')
        cmd = [self.binary, 'cluster', '--nodes', str(self.nodes), '--data-dir', self.data,
               '--base-port', str(self.base_port), '--insecure']
        if self.with_metrics:
            cmd.append('--metrics')
        cmd += ['--', '--argon2-memory-kib', '64', '--argon2-iterations', '1',
                '--throttle', 'false']
        self.sup = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while self.endpoints is None or (self.with_metrics and self.metrics is None):
                line = self.sup.stdout.readline()
                if not line or time.monotonic() > deadline:
                    sys.exit(f'cluster did not come up; logs in {self.data}')
                m = re.search(r'node (\d+) leads', line)
                if m:
                    self.leader = int(m.group(1))
                m = re.match(r'\s+(\d+)\s+(\d+)\s+127\.0\.0\.1:', line)
                if m:
                    self.pids[int(m.group(2))] = int(m.group(1))
                if line.startswith('endpoints: '):
                    self.endpoints = line.split()[1].split(',')
                if line.startswith('metrics: '):
                    self.metrics = line.split()[1:]
            if self.with_metrics:
                # cluster --metrics puts every node's /metrics behind this bearer token.
                with open(os.path.join(self.data, 'metrics.token')) as f:
                    self.token = f.readline().strip()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        os.killpg(self.sup.pid, signal.SIGTERM)
        try:
            self.sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.sup.pid, signal.SIGKILL)
        if not self.keep:
            subprocess.run(['rm', '-rf', self.data])
        return False
