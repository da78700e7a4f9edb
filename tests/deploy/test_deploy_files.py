"""deploy/ works as shipped: every file is checked against what its consumer really accepts.

``make check-deploy`` runs this module. Sources of truth (cited; nothing is copied):

* Collector component keys: the ``mapstructure`` tags of each component's ``Config`` struct —
  open-telemetry/opentelemetry-collector-contrib ``exporter/azuremonitorexporter/config.go`` @
  a24659b393a8aeea46c39b041c3a2a8d83ba8941 and ``exporter/prometheusremotewriteexporter/config.go`` @
  647b4c1fceb43ee8d938aaca6e179a1ac61f29ed (``confighttp.ClientConfig`` and the timeout/retry/queue
  helpers are squashed in); core ``receiver/otlpreceiver``, ``processor/batchprocessor``,
  ``processor/memorylimiterprocessor`` config structs.
* Prometheus names of OTLP metrics: the OTLP→Prometheus translation the remote-write exporter applies
  with ``add_metric_suffixes`` (prometheus/otlptranslator, "UnderscoreEscapingWithSuffixes"): dots to
  underscores, unit suffix (``s`` → ``_seconds``; ``1`` on a gauge → ``_ratio``; ``{annotation}`` units
  add nothing), ``_total`` on monotonic sums.
* Pod Security Standards "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# --- OpenTelemetry Collector --------------------------------------------------------------------

_HTTP_CLIENT = {
    "endpoint", "proxy_url", "tls", "read_buffer_size", "write_buffer_size", "timeout", "headers",
    "customizer", "auth", "compression", "max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host",
    "idle_conn_timeout", "disable_keep_alives", "http2_read_idle_timeout", "http2_ping_timeout", "cookies",
}  # fmt: skip
_QUEUE = {"enabled", "num_consumers", "queue_size", "blocking", "storage", "sizer", "wait_for_result", "batch"}
ALLOWED: dict[str, dict[str, Any]] = {
    "receivers.otlp": {"protocols": {"grpc": {"endpoint": None}, "http": {"endpoint": None}}},
    "processors.batch": {"timeout": None, "send_batch_size": None, "send_batch_max_size": None,
                         "metadata_keys": None, "metadata_cardinality_limit": None},
    "processors.memory_limiter": {"check_interval": None, "limit_mib": None, "spike_limit_mib": None,
                                  "limit_percentage": None, "spike_limit_percentage": None},
    "exporters.azuremonitor": {
        "connection_string": None, "instrumentation_key": None, "maxbatchsize": None, "maxbatchinterval": None,
        "spaneventsenabled": None, "shutdown_timeout": None, "custom_events_enabled": None,
        "exception_events_enabled": None, "endpoint": None, "sending_queue": dict.fromkeys(_QUEUE),
        **dict.fromkeys(_HTTP_CLIENT - {"endpoint"}),
    },
    "exporters.prometheusremotewrite": {
        "namespace": None, "remote_write_queue": {"enabled": None, "queue_size": None, "num_consumers": None},
        "external_labels": None, "resource_to_telemetry_conversion": {"enabled": None}, "wal": None,
        "target_info": {"enabled": None}, "export_created_metric": {"enabled": None}, "add_metric_suffixes": None,
        "retry_on_failure": None, **dict.fromkeys(_HTTP_CLIENT),
    },
}  # fmt: skip


def _unknown_keys(cfg: Any, allowed: Any, path: str) -> Iterator[str]:
    if allowed is None or not isinstance(cfg, dict):
        return
    for k, v in cfg.items():
        if k not in allowed:
            yield f"{path}.{k}"
        else:
            yield from _unknown_keys(v, allowed[k], f"{path}.{k}")


def test_otel_collector_keys_exist_in_the_components_config_structs() -> None:
    doc = yaml.safe_load((DEPLOY / "otel-collector" / "otel-collector-azuremonitor.yaml").read_text())
    unknown: list[str] = []
    for section in ("receivers", "processors", "exporters"):
        for name, body in doc[section].items():
            key = f"{section}.{name}"
            assert key in ALLOWED, f"{key}: no checked key list for this component"
            unknown += _unknown_keys(body, ALLOWED[key], key)
    assert unknown == [], f"keys the components do not have: {unknown}"
    for pipeline in doc["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            assert set(pipeline[section]) <= set(doc[section]), pipeline


# --- Grafana queries the names remote-write produces ---------------------------------------------

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}


def prometheus_name(name: str, unit: str, *, monotonic_sum: bool, gauge: bool) -> str:
    """The remote-write exporter's metric name for an OTLP metric (with add_metric_suffixes)."""
    out = re.sub(r"[^A-Za-z0-9_:]", "_", name)
    u = re.sub(r"\{[^}]*\}", "", unit)
    suffix = _UNIT_SUFFIX.get(u, "ratio" if u == "1" and gauge else re.sub(r"[^A-Za-z0-9_:]", "_", u))
    if suffix and not out.endswith("_" + suffix):
        out += "_" + suffix
    if monotonic_sum and not out.endswith("_total"):
        out += "_total"
    return out


def _otlp_metric_names() -> set[str]:
    """Run the real OTLP metrics code once and translate what it exports."""
    from opentelemetry.sdk.metrics import Counter, ObservableCounter
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        MetricExporter,
        MetricExportResult,
        MetricsData,
        Sum,
    )

    from exporters.otlp import MetricsSnapshot, OtlpMetrics, PipelineHealth, PoolStat

    seen: list[Any] = []

    class Capture(MetricExporter):
        def __init__(self) -> None:
            super().__init__(preferred_temporality={Counter: AggregationTemporality.CUMULATIVE,
                                                    ObservableCounter: AggregationTemporality.CUMULATIVE})  # fmt: skip

        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any) -> MetricExportResult:
            for rm in metrics_data.resource_metrics:
                for sm in rm.scope_metrics:
                    seen.extend(sm.metrics)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
            return None

    snap = MetricsSnapshot(
        pools=[PoolStat("vnet", "vip", 32, 25, 7, 3600.0)],
        congestion={"hci-node-01": 0.5},
        firing_by_kind={"duplicate_ip": 1},
        pipeline=PipelineHealth(samples_in=10, parse_errors=1, queue_depth=2, export_failures=0),
    )
    m = OtlpMetrics(Capture(), {"hciwatch.site": "s"}, interval=3600.0, snapshot=lambda: snap)
    try:
        m.force_flush()
    finally:
        m.shutdown()
    names = set()
    for metric in seen:
        data = metric.data
        names.add(
            prometheus_name(
                metric.name,
                metric.unit or "",
                monotonic_sum=isinstance(data, Sum) and data.is_monotonic,
                gauge=isinstance(data, Gauge),
            )
        )
    return names


def test_translation_rules_match_the_documented_examples() -> None:
    assert prometheus_name("http.server.request.duration", "s", monotonic_sum=False, gauge=False) == (
        "http_server_request_duration_seconds"
    )
    assert prometheus_name("hciwatch.congestion.score", "1", monotonic_sum=False, gauge=True) == (
        "hciwatch_congestion_score_ratio"
    )
    assert prometheus_name("a.b", "{sample}", monotonic_sum=True, gauge=False) == "a_b_total"


def test_grafana_panels_query_names_remote_write_produces() -> None:
    produced = _otlp_metric_names()
    assert "hciwatch_congestion_score_ratio" in produced
    dash = json.loads((DEPLOY / "grafana" / "hciwatch-dashboard.json").read_text())
    queried: set[str] = set()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t]
    exprs += [v["query"] for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"]
    for expr in exprs:
        queried |= {n for n in re.findall(r"\b(hciwatch_[a-z0-9_]+)", expr) if n != "hciwatch_site"}
    assert queried, "no hciwatch_* metric in the dashboard"
    assert queried <= produced, f"the dashboard queries names nothing produces: {sorted(queried - produced)}"


# --- Kubernetes: Pod Security "restricted", readiness ---------------------------------------------


def _k8s_docs(path: Path = DEPLOY / "kubernetes" / "hciwatch.yaml") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


K8S_FILES = sorted((DEPLOY / "kubernetes").rglob("*.yaml"))
FLEET = DEPLOY / "kubernetes" / "fleet"


def restricted_violations(pod: dict[str, Any], where: str) -> list[str]:
    """Pod Security Standard "restricted" rules that apply to a pod spec."""
    out: list[str] = []
    psc = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(f"{where}: {flag}")
    for vol in pod.get("volumes", []):
        allowed = {"name", "configMap", "secret", "persistentVolumeClaim", "emptyDir", "projected",
                   "downwardAPI", "csi", "ephemeral"}  # fmt: skip
        if set(vol) - allowed:
            out.append(f"{where}: volume {vol['name']} type {sorted(set(vol) - allowed)}")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        name = f"{where}/{c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile.type must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities.drop must contain ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities.add beyond NET_BIND_SERVICE")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


def test_restricted_checker_catches_the_old_manifest_gap() -> None:
    pod = {"securityContext": {"runAsNonRoot": True}, "containers": [{"name": "c", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}  # fmt: skip
    assert restricted_violations(pod, "p") == ["p/c: seccompProfile.type must be RuntimeDefault or Localhost"]


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_kubernetes_manifests_are_pod_security_restricted(path: Path) -> None:
    docs = _k8s_docs(path)
    pods = [(f"{d['kind']}/{d['metadata']['name']}", _pod_spec(d)) for d in docs if _pod_spec(d) is not None]
    assert pods or path.name == "namespace.yaml"
    problems = [v for where, pod in pods for v in restricted_violations(pod, where)]
    assert problems == []
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    for ns in namespaces:
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _pod_spec(doc: dict[str, Any]) -> Any:
    """The pod template of a workload (a CronJob's through its job template), else None."""
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _fleet_configs() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Workload name → (its parsed hciwatch config, its pod spec), for every fleet manifest."""
    from hciwatch.config import parse_config

    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for path in sorted(FLEET.glob("*.yaml")):
        docs = _k8s_docs(path)
        maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        for d in docs:
            pod = _pod_spec(d)
            if pod is None:
                continue
            cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
            text = maps[cm_name]["data"]["hciwatch.toml"]
            out[d["metadata"]["name"]] = (parse_config(tomllib.loads(text), text, file=str(path)), pod)
    return out


def test_fleet_sites_write_one_lake_under_their_own_names_and_central_reads_it() -> None:
    from hciwatch.cli import build_parser

    configs = _fleet_configs()
    sites = {n: c for n, c in configs.items() if n.startswith("hciwatch-site-")}
    central = configs["hciwatch-central"]
    assert len(sites) >= 2
    names = [cfg.collector.site.name for cfg, _ in sites.values()]
    assert len(set(names)) == len(names)  # every site writes under its own site=<name>/
    lakes = {cfg.collector.store.lake.url for cfg, _ in configs.values()}
    assert len(lakes) == 1 and next(iter(lakes)).startswith("abfss://")
    parser = build_parser()
    verbs = {"hciwatch-central": "serve-fleet", "hciwatch-compact": "compact"}
    for name, (cfg, pod) in configs.items():
        args = parser.parse_args(pod["containers"][0]["args"])
        assert args.command == verbs.get(name, "run"), name
        if args.command != "compact":  # the compactor serves nothing
            assert cfg.api.token_file is not None and not cfg.api.allow_unauthenticated, name
    assert parser.parse_args(configs["hciwatch-compact"][1]["containers"][0]["args"]).lake in lakes
    for name in sites:
        kinds = {d["kind"] for p in FLEET.glob("*.yaml") for d in _k8s_docs(p) if d["metadata"]["name"] == name}
        assert "StatefulSet" in kinds and "Deployment" not in kinds  # one writer per site, its WAL on its own volume
    assert central[1].get("automountServiceAccountToken") is False
    cron = next(d for d in _k8s_docs(FLEET / "compact-cronjob.yaml") if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # one compactor per lake


def test_fleet_secret_refs_are_filled_from_secrets() -> None:
    """Every ``env:NAME`` a fleet config names is an env var from a Secret key; every secret file
    path lies under a mounted Secret volume; no secret value sits in a ConfigMap."""
    for name, (cfg, pod) in _fleet_configs().items():
        c = pod["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        secret_vols = {v["name"] for v in pod["volumes"] if "secret" in v}
        secret_dirs = [m["mountPath"] for m in c["volumeMounts"] if m["name"] in secret_vols]
        lake = cfg.collector.store.lake
        refs = [r for r in (lake.sas_token, lake.account_key, lake.connection_string, cfg.api.token_file) if r]
        assert refs, name
        for ref in refs:
            if ref.env is not None:
                var = env.get(ref.env)
                assert var is not None and "secretKeyRef" in var["valueFrom"], (name, str(ref))
            else:
                assert any(str(ref.path).startswith(d + "/") for d in secret_dirs), (name, str(ref))


def test_kubernetes_config_map_is_a_valid_config() -> None:
    from hciwatch.config import parse_config

    cm = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")
    text = cm["data"]["hciwatch.toml"]
    cfg = parse_config(tomllib.loads(text), text, file="configmap")
    assert cfg.api.token_file  # the API is never open in the shipped manifest


async def test_readiness_does_not_depend_on_sinks(tmp_path: Path) -> None:
    """A sink that is down (Collector outage) leaves /readyz ready; it is reported, not gating."""
    from hciwatch.config import parse_config
    from hciwatch.service import Service

    text = (
        f'data_dir = "{tmp_path}/data"\n[api]\nallow_unauthenticated = true\n'
        '[[sources]]\ntype = "windows"\ntargets = ["127.0.0.1:9"]\n'
        '[[exporters]]\ntype = "webhook"\nname = "down"\nurl = "http://127.0.0.1:9/hook"\n'
    )
    svc = Service(parse_config(tomllib.loads(text), text, file="t.toml"))
    try:
        sink = next(e for e in svc.exporters if e.name == "down")

        async def unhealthy() -> bool:
            return False

        sink.healthcheck = unhealthy  # type: ignore[method-assign]
        info = await svc.readiness()
        assert info["ready"] is True and info["sinks"]["down"] is False
    finally:
        svc.outbox.close()
        svc.pipeline.close()


# --- systemd, Containerfile, licence, YAML ---------------------------------------------------------


def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / "hciwatch.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_systemd_unit_permits_netlink_and_checks_config_the_supported_way() -> None:
    unit = _unit()
    families = " ".join(unit["RestrictAddressFamilies"]).split()
    assert "AF_NETLINK" in families  # `ip -j neigh` (neighbours source) talks rtnetlink
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    assert unit["ExecStartPre"][0].endswith("check-config --config /etc/hciwatch/hciwatch.toml")
    assert unit["RestartPreventExitStatus"] == ["2"]  # a config error does not become a restart loop
    assert "pip install hciwatch" not in (DEPLOY / "systemd" / "hciwatch.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_security_scores_ok() -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(DEPLOY / "systemd" / "hciwatch.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.0 and m.group(2) == "OK", m.group(0)


def _stages(text: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(s)
    return stages


def test_containerfile_is_multi_stage_non_root_without_build_tools() -> None:
    stages = _stages((ROOT / "Containerfile").read_text())
    assert len(stages) >= 2
    final = stages[-1]
    users = [s.split()[1] for s in final if s.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    text = "\n".join(final)
    for tool in ("gcc", "build-essential", "make ", "g++", "python3-dev", "git"):
        assert tool not in text, f"build tool {tool!r} in the final image"
    assert any(s.upper().startswith("COPY --FROM=") for s in final)
    assert "pip uninstall -y pip setuptools wheel" in text


def test_license_file_matches_pyproject() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _yaml_files() -> Sequence[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def test_yaml_passes_yamllint() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig(
        "extends: default\nrules: {line-length: {max: 120}, document-start: disable,"
        " comments: {min-spaces-from-content: 1}, truthy: {check-keys: false},"
        " braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}}"
    )
    problems = []
    for f in _yaml_files():
        for p in linter.run(f.read_text(), conf, str(f)):
            if p.level == "error":
                problems.append(f"{f.relative_to(ROOT)}:{p.line}: {p.desc} ({p.rule})")
    assert problems == []


def test_json_is_valid() -> None:
    for f in DEPLOY.rglob("*.json"):
        json.loads(f.read_text())
