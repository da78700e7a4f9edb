"""Bounded profile of ``bench/bench_eval_pass.py`` (the full run is part of ``make bench``): a
2-host lab site, one warm-up minute, two measured passes, both paths. No timing assertion — only
that the script finished and printed its machine-readable last line."""

from __future__ import annotations

import re

from tests.bench.test_bench_profiles import run_bench


def test_bench_eval_pass_runs_on_a_small_profile() -> None:
    out = run_bench("bench_eval_pass.py", "--hosts", "2", "--warmup", "1", "--passes", "2", "--compare")
    assert "former full re-query path" in out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"RESULT eval_ms_per_pass hosts=2 \d+\.\d", last), last
