"""Importing the service does not import scikit-learn or scipy.stats.

Why: ``sklearn.ensemble`` alone takes ~2 s to import (and ``scipy.stats`` ~0.5 s), which every
``hciwatch`` command, worker process and test paid before any detector had trained a model. They
are imported where they are first used: the congestion detector's first IsolationForest fit and the
pool trend's first interval.
"""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str, names: tuple[str, ...]) -> dict[str, bool]:
    """Which of ``names`` a fresh interpreter has imported after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(str(n in sys.modules) for n in {names!r}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(zip(names, (w == "True" for w in out.split()), strict=True))


def test_importing_the_pipeline_imports_neither_sklearn_nor_scipy() -> None:
    got = _modules_after("import hciwatch.pipeline, analytics.engine", ("sklearn", "scipy", "joblib"))
    assert got == {"sklearn": False, "scipy": False, "joblib": False}


def test_sklearn_is_imported_when_the_first_forest_is_trained() -> None:
    """The lazy import still happens (a control: the test above would pass if nothing trained)."""
    statement = (
        "from analytics.congestion import CongestionDetector\n"
        "from analytics.settings import AnalyticsSettings\n"
        "import numpy as np\n"
        "d = CongestionDetector(AnalyticsSettings())\n"
        "d.train.extend(np.random.default_rng(0).normal(size=(d.c.if_min_train, 5)))\n"
        "d._maybe_train(0)\n"
        "assert d.forest is not None"
    )
    assert _modules_after(statement, ("sklearn",)) == {"sklearn": True}
