#!/usr/bin/env python3
"""The data disk's fsync latency, as the embedded log pays it per group commit:
2,000 x (pwrite of 4 KiB + fdatasync) on a file at the given path, in percentiles.

    python3 scripts/fsync-latency.py target/fsync.test
"""
import os
import sys
import time

path = sys.argv[1] if len(sys.argv) > 1 else "fsync.test"
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
buf = b"x" * 4096
lat = []
try:
    for i in range(2000):
        t = time.perf_counter()
        os.pwrite(fd, buf, (i % 256) * 4096)
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000)
finally:
    os.close(fd)
    os.unlink(path)
lat.sort()
n = len(lat)
print(
    f"pwrite+fdatasync 4 KiB x{n}: p50 {lat[n // 2]:.3f} ms p90 {lat[int(n * .9)]:.3f} "
    f"p99 {lat[int(n * .99)]:.3f} max {lat[-1]:.3f} mean {sum(lat) / n:.3f}"
)
