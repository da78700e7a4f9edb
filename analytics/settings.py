"""Analytics settings: every knob of every detector, validated, with documented defaults.

The ``[analytics]`` table of the config file maps 1:1 onto :class:`AnalyticsSettings`. Durations
accept seconds (``90``), a number with a unit (``"90s"``, ``"5m"``, ``"12h"``, ``"7d"``) or an
ISO-8601 duration (``"PT5M"``). Unknown keys are rejected so a typo never silently falls back to a
default.

The defaults are chosen from the domain, not from one lab: sensitivities follow Azure Monitor's
dynamic thresholds (low/medium/high, N failing of M periods), IP-plan reserves follow the AKS on
Azure Local documentation (``shared/reference/domain-reference.md`` §5.2), and the detection
windows are multiples of the evaluation step so they scale with it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from collector.schema import AlertKind, Severity

_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIMPLE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<u>ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(value: Any) -> timedelta:
    """Accept the duration spellings a TOML author naturally writes; reject everything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _SIMPLE.match(value)
        if m:
            return timedelta(seconds=float(m.group("n")) * _UNIT[(m.group("u") or "s").lower()])
        m = _ISO.match(value.strip())
        if m and any(m.group(g) for g in "dhms"):
            return timedelta(
                days=float(m.group("d") or 0),
                hours=float(m.group("h") or 0),
                minutes=float(m.group("m") or 0),
                seconds=float(m.group("s") or 0),
            )
    raise ValueError(f"not a duration: {value!r} (use seconds, a number with ms/s/m/h/d/w, or ISO-8601 like PT5M)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Sensitivity(StrEnum):
    """How far from its baseline a value must be to count as a violation (Azure Monitor's names)."""

    LOW = "low"  # fewer alerts: only large deviations
    MEDIUM = "medium"
    HIGH = "high"  # more alerts: smaller deviations count

    @property
    def z(self) -> float:
        """Robust z-score (MAD-scaled, ≈ standard deviations for Gaussian noise) to violate."""
        return {"low": 6.0, "medium": 4.5, "high": 3.0}[self.value]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaselineSettings(_Model):
    """Robust per-series baselines shared by congestion and metric-anomaly detection."""

    window: Duration = Field(
        default=timedelta(hours=12),
        description="Trailing window of step values the fallback (non-time-of-day) baseline uses. Default 12h.",
    )
    min_points: int = Field(
        default=30,
        ge=5,
        description="Step values a series needs before it is judged against its own baseline; until "
        "then it is judged against its peers (other hosts, same signal) when there are at "
        "least 3 of them with baselines, else not at all (cold start). Default 30.",
    )
    time_of_day: bool = Field(
        default=True, description="Use an hour-of-day baseline once it has enough history. Default true."
    )
    tod_days: int = Field(
        default=3,
        ge=2,
        le=14,
        description="Days of history kept per hour-of-day slot (older values drop out). Default 3.",
    )
    tod_min_days: int = Field(
        default=2,
        ge=2,
        description="Distinct days an hour-of-day slot must span before it replaces the trailing baseline. Default 2.",
    )
    tod_min_points: int = Field(
        default=30, ge=5, description="Values an hour-of-day slot needs before it is used. Default 30."
    )
    refresh: Duration = Field(
        default=timedelta(minutes=10),
        description="How often (in data time) medians and MADs are recomputed. Default 10m.",
    )
    forget_after: Duration = Field(
        default=timedelta(days=3),
        description="A series silent this long (no step value) loses its baseline and detector "
        "state, so memory follows the live series (pods, NICs and hosts come and go); if it "
        "comes back it learns afresh, as a new series would. Default 3d (tod_days).",
    )
    relative_floor: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Smallest deviation scale as a fraction of the baseline median, so a series "
        "that is unusually steady does not turn every wobble into a huge z (at medium "
        "sensitivity a change must then be at least 4.5 × 5 % ≈ 22 %). Default 0.05.",
    )


class PoolSettings(_Model):
    """IP pool accounting and time-to-exhaustion forecasting (vip/node pool exhaustion)."""

    ip_plan: Literal["22h2", "23h2"] = Field(
        default="22h2",
        description="Which AKS IP plan sets the default node-pool upgrade reserve: '22h2' (AKS on "
        "Azure Stack HCI 22H2 / Windows Server: 2 IPs for the management cluster's "
        "update operations + 5 per workload cluster) or '23h2' (AKS Arc: 1 per "
        "cluster for rolling upgrades). A network's node_upgrade_reserve overrides it. "
        "Default '22h2'.",
    )
    management_update_ips: int = Field(
        default=2, ge=0, description="22H2 plan: node IPs reserved for the management cluster's updates. Default 2."
    )
    workload_update_ips: int = Field(
        default=5, ge=0, description="22H2 plan: node IPs reserved per workload cluster for updates. Default 5."
    )
    arc_upgrade_ips_per_cluster: int = Field(
        default=1, ge=0, description="23H2 plan: node IPs reserved per cluster for a rolling upgrade. Default 1."
    )
    vip_reserve: int = Field(
        default=2,
        ge=0,
        description="VIPs to keep free when a network does not set vip_reserve: room for one more "
        "workload cluster (its API server VIP and its load balancer VIP). Default 2.",
    )
    allocation_ttl: Duration = Field(
        default=timedelta(minutes=10),
        description="An observed IP counts as allocated until this long after it was last seen "
        "(inventory sources re-list everything every poll). Default 10m.",
    )
    bucket: Duration = Field(
        default=timedelta(minutes=5), description="Resolution of the usage history the trend is fitted on. Default 5m."
    )
    trend_window: Duration = Field(
        default=timedelta(hours=12),
        description="Trailing window the robust (Theil–Sen) trend is fitted over. Default 12h.",
    )
    min_trend_span: Duration = Field(
        default=timedelta(hours=1),
        description="History a pool needs before a trend is trusted (before that only 'already "
        "below the reserve' fires). Default 1h.",
    )
    min_trend_points: int = Field(default=6, ge=3, description="Usage points a trend needs. Default 6.")
    churn_lifetime: Duration = Field(
        default=timedelta(hours=2),
        description="Addresses held continuously longer than this are 'long-lived'; the growth of their "
        "count is the net allocation rate under create/delete churn (CI preview Services that live "
        "20-30 minutes make the usage walk up and down, hiding a slow leak; they never become "
        "long-lived). Set it above the churn's lifetime; 0 turns the estimate off. Default 2h.",
    )
    long_lived_window: Duration = Field(
        default=timedelta(days=3),
        description="History of the long-lived-address count the leak rate is judged over (a few addresses a "
        "day need days to be significant). Default 3d.",
    )
    confidence: float = Field(
        default=0.90,
        gt=0.5,
        lt=1.0,
        description="Confidence of the slope interval; a pool pages on a forecast only when the "
        "lower bound of the slope is above zero (a flat pool never pages). Default 0.90.",
    )
    horizon: Duration = Field(
        default=timedelta(days=7),
        description="Fire when free addresses are forecast to fall below the reserve within this. Default 7d.",
    )
    clear_horizon_factor: float = Field(
        default=1.5,
        ge=1.0,
        description="Hysteresis: a firing forecast clears only when the crossing is beyond "
        "horizon × this (or the trend is no longer rising). Default 1.5.",
    )


class OverlapSettings(_Model):
    """Configured pools that overlap, and observed addresses sitting in the wrong pool."""

    observed_ttl: Duration = Field(
        default=timedelta(minutes=10),
        description="A misplaced address is reported while it was seen within this. Default 10m.",
    )


class DuplicateIpSettings(_Model):
    """Duplicate-IP evidence rules."""

    presence_ttl: Duration = Field(
        default=timedelta(minutes=5),
        description="An owner is taken to hold an IP from one sighting until this long after it; "
        "sightings closer than this join into one holding period. Default 5m.",
    )
    min_overlap: Duration = Field(
        default=timedelta(minutes=2),
        description="Two owners must hold the IP at the same time for at least this long (so an IP "
        "that moved between owners is not a duplicate). Default 2m.",
    )
    flip_window: Duration = Field(
        default=timedelta(minutes=15),
        description="An IP whose MAC goes A→B→A in one observer's neighbour table within this is "
        "flip-flopping (arpwatch 'flip flop'). A single change (failover) is not. "
        "Default 15m.",
    )
    min_flips: int = Field(
        default=2,
        ge=1,
        description="Reversals (A→B then B→A) one observer must see within flip_window; 1 follows "
        "arpwatch literally, 2 (A→B→A→B) ignores a failover quickly followed by a "
        "failback. Default 2.",
    )
    event_ttl: Duration = Field(
        default=timedelta(minutes=30),
        description="A Tcpip 4198/4199 address-conflict event keeps the conflict current this long. Default 30m.",
    )
    retention: Duration = Field(
        default=timedelta(hours=1), description="How long holding periods are remembered. Default 1h."
    )


class CongestionSettings(_Model):
    """East-west (storage/RDMA) congestion detection."""

    sensitivity: Sensitivity | None = Field(
        default=None, description="Overrides the global sensitivity for congestion. Default: the global one."
    )
    min_signals: int = Field(
        default=2,
        ge=1,
        le=4,
        description="Independent signals (PFC pauses, RDMA errors, SMB latency, NIC discards) that "
        "must violate together for a step to count; a single violating signal counts "
        "only when the multivariate model also calls the step anomalous. Default 2.",
    )
    min_failing_periods: int = Field(default=3, ge=1, description="N violating steps … Default 3.")
    of_periods: int = Field(default=5, ge=1, description="… of the last M observed steps. Default 5.")
    clear_ratio: float = Field(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Hysteresis: a congested host clears when no signal reaches clear_ratio × the "
        "firing z for clear_periods observed steps. Default 0.6.",
    )
    clear_periods: int = Field(default=3, ge=1, description="See clear_ratio. Default 3.")
    group_window: Duration = Field(
        default=timedelta(minutes=10),
        description="Hosts that become congested within this of an open incident's latest onset "
        "join that incident (one incident for a fabric-wide storm). Default 10m.",
    )
    latency_floor_seconds: float = Field(
        default=0.0002,
        ge=0.0,
        description="Smallest SMB latency deviation scale in seconds (timer resolution noise). Default 0.0002.",
    )
    self_calibrate: bool = Field(
        default=True,
        description="Each host's bar for each signal is the larger of the sensitivity's z and the "
        "tail_top-th largest z that signal reached on that host in the last tail_window "
        "(steps outside incidents, and one value per incident: its peak), so a host whose normal "
        "is spiky (another NIC model, routine micro-bursts) needs more than its own routine "
        "extremes and a quiet host keeps the plain z. Default true.",
    )
    tail_window: Duration = Field(
        default=timedelta(hours=36),
        description="Data time a host's own tail is calibrated on (more than a daily cycle, so a "
        "nightly routine is in it). Default 36h.",
    )
    tail_top: int = Field(
        default=3,
        ge=1,
        le=20,
        description="The bar is the tail_top-th largest past z in tail_window (3: one or two odd "
        "steps do not move it). Default 3.",
    )
    isolation_forest: bool = Field(
        default=True, description="Train a multivariate IsolationForest across hosts. Default true."
    )
    if_estimators: int = Field(default=100, ge=10, le=1000, description="IsolationForest trees. Default 100.")
    if_contamination: float = Field(
        default=0.005,
        gt=0.0,
        lt=0.5,
        description="Share of training steps the forest treats as outliers (sets its cut). Default 0.005.",
    )
    if_min_train: int = Field(
        default=300, ge=50, description="Host-steps needed before the forest is trained. Default 300."
    )
    if_train_max: int = Field(
        default=20000, ge=100, description="Most recent host-steps kept for training. Default 20000."
    )
    if_retrain: Duration = Field(default=timedelta(hours=6), description="Retrain interval (data time). Default 6h.")
    retain_inactive: Duration = Field(
        default=timedelta(hours=1),
        description="A cleared incident is still reported (inactive, with its last evidence) this "
        "long, so its resolution carries the final numbers. Default 1h.",
    )

    @model_validator(mode="after")
    def _n_of_m(self) -> CongestionSettings:
        if self.min_failing_periods > self.of_periods:
            raise ValueError("min_failing_periods must be <= of_periods")
        return self


class MetricAnomalyRule(_Model):
    """One user-listed metric watched with dynamic thresholds (Azure Monitor style)."""

    metric: str = Field(
        min_length=1,
        description="Required. Canonical metric name. '*_total' counters are judged as per-second rates, "
        "'*_per_sec' and gauges as values; a counter base name without suffix "
        "(e.g. 'smb.client.requests') matches both its raw and formatted forms.",
    )
    name: str | None = Field(default=None, description="Rule name (part of the alert identity). Default: metric.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label filter: every key must equal the value ('*' and '?' glob allowed). "
        "Use the key 'host' to filter hosts. Default: all series.",
    )
    sensitivity: Sensitivity | None = Field(default=None, description="Default: the global sensitivity.")
    min_failing_periods: int = Field(default=3, ge=1, description="N violating steps … Default 3.")
    of_periods: int = Field(default=5, ge=1, description="… of the last M observed steps. Default 5.")
    direction: Literal["up", "down", "both"] = Field(
        default="both", description="Which deviations count. Default 'both' (as Azure's 'greater or lower')."
    )
    severity: Severity = Field(default=Severity.SEV3, description="Severity of the alert. Default Sev3.")
    relearn_after: Duration = Field(
        default=timedelta(days=1),
        description="An anomaly that lasts this long is taken as the series' new normal: its values "
        "feed the baseline from then on, so after a lasting level shift the alert clears "
        "once the baseline has moved instead of firing forever (dynamic thresholds adapt "
        "the same way). 0 = never. Default 1d.",
    )

    @model_validator(mode="after")
    def _n_of_m(self) -> MetricAnomalyRule:
        if self.min_failing_periods > self.of_periods:
            raise ValueError("min_failing_periods must be <= of_periods")
        return self

    @property
    def rule_name(self) -> str:
        return self.name or self.metric


class KindPolicy(_Model):
    """Lifecycle timing of one alert kind."""

    for_: Duration = Field(
        default=timedelta(0),
        validation_alias=AliasChoices("for", "for_"),
        description="A condition must hold this long (pending) before it fires. Default: per kind "
        "(see AnalyticsSettings.lifecycle).",
    )
    hold: Duration = Field(
        default=timedelta(minutes=5),
        description="A firing alert resolves only after its condition has been gone this long "
        "(hysteresis against flapping). Default: per kind (see AnalyticsSettings.lifecycle).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _default_lifecycle() -> dict[AlertKind, KindPolicy]:
    m = timedelta(minutes=1)
    return {
        AlertKind.VIP_POOL_EXHAUSTION: KindPolicy(for_=10 * m, hold=30 * m),
        AlertKind.NODE_POOL_EXHAUSTION: KindPolicy(for_=10 * m, hold=30 * m),
        AlertKind.POD_POOL_EXHAUSTION: KindPolicy(for_=10 * m, hold=30 * m),
        AlertKind.IP_POOL_OVERLAP: KindPolicy(for_=2 * m, hold=15 * m),
        AlertKind.DUPLICATE_IP: KindPolicy(for_=1 * m, hold=10 * m),
        AlertKind.EASTWEST_CONGESTION: KindPolicy(for_=2 * m, hold=10 * m),
        AlertKind.METRIC_ANOMALY: KindPolicy(for_=timedelta(0), hold=5 * m),
        AlertKind.SOURCE_DOWN: KindPolicy(for_=2 * m, hold=2 * m),
    }


class AnalyticsSettings(_Model):
    """Everything the analytics engine and the alert manager can be told (``[analytics]``)."""

    evaluation_interval: Duration = Field(
        default=timedelta(seconds=60),
        description="Step of the analysis grid: samples are turned into one value per step and "
        "series. The service evaluates this often. Default 60s.",
    )
    settle: Duration = Field(
        default=timedelta(0),
        description="Wait this long after a step ends before analysing it, for agents that deliver "
        "late (MQTT batches). Default 0s (replay delivers in order).",
    )
    max_rate_gap: Duration = Field(
        default=timedelta(minutes=5),
        description="Two samples of a counter further apart than this give no rate (no "
        "interpolation across scrape gaps). Default 5m.",
    )
    bootstrap_window: Duration = Field(
        default=timedelta(hours=24),
        description="History read on the first evaluation after a (re)start to rebuild baselines "
        "and usage trends. Default 24h.",
    )
    sensitivity: Sensitivity = Field(
        default=Sensitivity.MEDIUM, description="Default sensitivity of dynamic thresholds. Default medium."
    )
    seed: int = Field(default=0, description="Seed of every randomised model (reproducible replays). Default 0.")
    baselines: BaselineSettings = Field(default_factory=BaselineSettings)
    pools: PoolSettings = Field(default_factory=PoolSettings)
    overlap: OverlapSettings = Field(default_factory=OverlapSettings)
    duplicate_ip: DuplicateIpSettings = Field(default_factory=DuplicateIpSettings)
    congestion: CongestionSettings = Field(default_factory=CongestionSettings)
    metric_anomaly: list[MetricAnomalyRule] = Field(
        default_factory=list, description="Metrics watched with dynamic thresholds. Default none."
    )
    lifecycle: dict[AlertKind, KindPolicy] = Field(
        default_factory=_default_lifecycle,
        description="Per-kind 'for' and 'hold' durations; kinds or fields not given keep their "
        "defaults. Default (for/hold): vip_pool_exhaustion 10m/30m, node_pool_exhaustion "
        "10m/30m, pod_pool_exhaustion 10m/30m, ip_pool_overlap 2m/15m, duplicate_ip 1m/10m, "
        "eastwest_congestion 2m/10m, metric_anomaly 0s/5m, source_down 2m/2m.",
    )

    @field_validator("lifecycle", mode="before")
    @classmethod
    def _merge_lifecycle(cls, v: Any) -> Any:
        """A kind given with only 'for' or only 'hold' keeps the default of the other."""
        if not isinstance(v, dict):
            return v
        defaults = _default_lifecycle()
        out: dict[Any, Any] = {}
        for kind, pol in v.items():
            try:
                base = defaults.get(AlertKind(kind))
            except ValueError:
                base = None  # the model reports the bad kind with the allowed values
            if base is not None and isinstance(pol, dict):
                merged: dict[str, Any] = {"for": base.for_, "hold": base.hold}
                merged.update({("for" if k == "for_" else k): val for k, val in pol.items()})
                out[kind] = merged
            else:
                out[kind] = pol
        return out

    @field_validator("lifecycle", mode="after")
    @classmethod
    def _fill_lifecycle(cls, v: dict[AlertKind, KindPolicy]) -> dict[AlertKind, KindPolicy]:
        merged = _default_lifecycle()
        merged.update(v)
        return merged

    @field_validator("evaluation_interval", mode="after")
    @classmethod
    def _positive_step(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("evaluation_interval must be at least 1s")
        if (v.total_seconds() * 1000) % 1000:
            raise ValueError("evaluation_interval must be a whole number of seconds")
        return v

    @model_validator(mode="after")
    def _unique_rules(self) -> AnalyticsSettings:
        names = [r.rule_name for r in self.metric_anomaly]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"metric_anomaly rule names must be unique (set 'name'): {', '.join(dup)}")
        return self

    @property
    def step_ms(self) -> int:
        return int(self.evaluation_interval.total_seconds() * 1000)

    def policy(self, kind: AlertKind) -> KindPolicy:
        return self.lifecycle.get(kind) or _default_lifecycle()[kind]
