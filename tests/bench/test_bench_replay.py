"""``bench_replay.py`` counts what its parse workers cost, though they are its grandchildren.

Replay's workers are forked from a forkserver (a child of the bench), so ``RUSAGE_CHILDREN``
holds their CPU only once the forkserver has been waited for, and their peak RSS is found among
the bench's descendants, not its children. A run on a small capture that starts two workers must
report both, non-zero (before the bench stopped the forkserver it printed ``0.0 s workers``).
"""

from __future__ import annotations

import re

from tests.bench.test_bench_profiles import run_bench


def test_replay_bench_counts_forked_workers_cpu_and_memory() -> None:
    out = run_bench("bench_replay.py", "--hours", "1", "--workers", "2")
    result = dict(kv.split("=", 1) for kv in out[out.index("RESULT replay") :].split()[2:])
    assert int(result["workers"]) == 2 and int(result["samples"]) > 0
    cpu = re.search(r"CPU ([0-9.]+) s main \+ ([0-9.]+) s workers", out)
    assert cpu is not None, out
    assert float(cpu.group(2)) >= 0.1, out  # the forkserver's imports alone are ~0.3 CPU-s
    assert int(result["rss_mib_worker"]) >= 20, out  # a worker with numpy and pyarrow mapped
