"""Bounded profile of ``bench/bench_eval_pass.py`` (the full run is part of ``make bench``): a
2-host lab site, one warm-up minute, two measured passes, both paths. No timing assertion — only
that the script finished, printed its machine-readable line, and that ``make bench``'s table finds
both figures it takes from it (wall ms per pass from the RESULT line, CPU-ms per pass from the
human line)."""

from __future__ import annotations

from bench.run_all import Step, collect
from tests.bench.test_bench_profiles import run_bench


def test_bench_eval_pass_runs_on_a_small_profile() -> None:
    out = run_bench("bench_eval_pass.py", "--hosts", "2", "--warmup", "1", "--passes", "2", "--compare")
    assert "former full re-query path" in out
    found = collect(Step("bench_eval_pass.py"), out.splitlines())
    assert float(found["eval_ms_per_pass"]["hosts=2"]) >= 0
    assert float(found["eval_cpu_ms_per_pass"]["hosts=2"]) >= 0
