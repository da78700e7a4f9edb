"""Suite-wide test setup: hypothesis profiles and the real-peer fixture modules.

Every module in ``tests/fixtures/`` is loaded as a pytest plugin, so a fixture that starts a
real peer (mosquitto, haproxy, the OTLP receiver) is available to every test by name.

Hypothesis profiles: ``ci`` (default; bounded so ``make test`` stays fast) and ``fuzz``
(``HYPOTHESIS_PROFILE=fuzz``, used by ``make fuzz``: at least 10,000 cases per parser).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)
