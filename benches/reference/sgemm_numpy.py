"""The machine's float32 matrix-multiply rate: numpy's sgemm (OpenBLAS in numpy's wheels) on
square matrices, the reference that "percent of peak" figures in docs/benchmarks.md divide by.

Run it with the thread count the other stacks get, and without OPENBLAS_CORETYPE (some images
pin OpenBLAS to an older core type, which halves the rate on AVX-512 CPUs):

    env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=2 python benches/reference/sgemm_numpy.py

Prints one line for people and one `RESULT` line of key=value pairs.
"""

import argparse
import os
import statistics
import time

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--size", type=int, default=2048, help="n for n x n times n x n (default 2048)")
p.add_argument("--reps", type=int, default=20, help="timed products (default 20), after 3 untimed")
args = p.parse_args()

import numpy as np  # noqa: E402  (after the argument check, so --help needs no numpy)

rng = np.random.default_rng(0)
n = args.size
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), dtype=np.float32)
times = []
for i in range(3 + args.reps):
    start = time.perf_counter()
    np.matmul(a, b, out=c)
    if i >= 3:
        times.append(time.perf_counter() - start)
gflops = 2 * n**3 / statistics.median(times) / 1e9
config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
blas = config.get("Build Dependencies", {}).get("blas", {}) if isinstance(config, dict) else {}
threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
print(f"numpy {np.__version__} ({blas.get('name', 'blas')} {blas.get('version', '')}), {threads} threads, "
      f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}: "
      f"{gflops:.1f} GFLOP/s float32 ({n}x{n}, median of {args.reps})")
print(f"RESULT stack=numpy threads={threads} size={n} gflops={gflops:.1f}")
