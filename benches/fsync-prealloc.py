#!/usr/bin/env python3
"""What an `fdatasync` after a small append costs, by how the file's space was made.

The Raft log (`auth-raft/src/wal.rs`) appends a record and syncs it. If the append
grows the file, the sync must also write back the new file size (a journal commit on
ext4); in space allocated ahead it need not. This appends N records of B bytes to a
file in the current directory (or --dir), syncing each, for four files:

  grow    the file grows with each append (the log before preallocation)
  sparse  extended first with ftruncate (a hole)
  falloc  allocated first with posix_fallocate (what wal.rs does)
  zero    written with zeros first

and prints the median and p99 of the sync, for several rounds in rotating order.

    python3 benches/fsync-prealloc.py --dir /path/on/the/data/disk
"""
import argparse
import os
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument('--dir', default='.')
ap.add_argument('--records', type=int, default=2000)
ap.add_argument('--bytes', type=int, default=300)
ap.add_argument('--rounds', type=int, default=3)
a = ap.parse_args()
record = b'x' * a.bytes
modes = ['grow', 'sparse', 'falloc', 'zero']


def run(mode):
    path = os.path.join(a.dir, f'fsync-prealloc-{mode}.tmp')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = a.records * len(record) + 4096
        if mode == 'sparse':
            os.ftruncate(fd, size)
        elif mode == 'falloc':
            os.posix_fallocate(fd, 0, size)
        elif mode == 'zero':
            os.pwrite(fd, b'\0' * size, 0)
        os.fsync(fd)
        took = []
        for i in range(a.records):
            os.pwrite(fd, record, i * len(record))
            t = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    return statistics.median(took) * 1e6, took[int(len(took) * 0.99)] * 1e6


for r in range(a.rounds):
    for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
        p50, p99 = run(mode)
        print(f'round {r + 1} {mode:7s} fdatasync p50 {p50:5.0f} us  p99 {p99:5.0f} us', flush=True)
