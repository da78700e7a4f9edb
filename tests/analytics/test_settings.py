"""Settings: defaults, durations, strictness (unknown keys fail loudly)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from analytics.settings import AnalyticsSettings, Sensitivity, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        (1.5, 1.5),
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("250ms", 0.25),
        ("PT5M", 300),
        ("P1DT2H", 93600),
        ("PT0.5S", 0.5),
    ],
)
def test_duration_spellings(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["five minutes", "-5m", -1, True, "P", "5 parsecs", None])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_defaults_and_strictness() -> None:
    s = AnalyticsSettings()
    assert s.evaluation_interval == timedelta(seconds=60) and s.step_ms == 60_000
    assert s.pools.horizon == timedelta(days=7) and s.sensitivity is Sensitivity.MEDIUM
    assert Sensitivity.HIGH.z < Sensitivity.MEDIUM.z < Sensitivity.LOW.z
    with pytest.raises(ValidationError, match="extra"):
        AnalyticsSettings(evaluation_intervall="30s")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"congestion\.min_signals"):
        AnalyticsSettings.model_validate({"congestion": {"min_signals": 9}})
    with pytest.raises(ValidationError, match="min_failing_periods must be <= of_periods"):
        AnalyticsSettings.model_validate(
            {"metric_anomaly": [{"metric": "x", "min_failing_periods": 6, "of_periods": 5}]}
        )
    with pytest.raises(ValidationError, match="unique"):
        AnalyticsSettings.model_validate(
            {"metric_anomaly": [{"metric": "x"}, {"metric": "x", "labels": {"host": "a"}}]}
        )
    with pytest.raises(ValidationError, match="lifecycle"):
        AnalyticsSettings.model_validate({"lifecycle": {"vip_exhaustion": {"for": "1m"}}})
    with pytest.raises(ValidationError, match="whole number of seconds"):
        AnalyticsSettings.model_validate({"evaluation_interval": "1500ms"})


def test_every_field_is_documented_with_its_default() -> None:
    from typing import get_args

    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            nested = [a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
            for sub in nested:
                walk(sub)
            if nested and ann in nested:
                continue
            assert field.description, f"{model.__name__}.{name} has no description"
            assert "Default" in field.description or "Required" in field.description, f"{model.__name__}.{name}"

    walk(AnalyticsSettings)
