"""Everything ``hciwatch run`` needs to be true before it opens anything, checked in one pass.

``check-config`` and ``run`` call the same :func:`preflight`, so a config that ``check-config``
approves cannot be rejected by ``run`` a moment later (the systemd unit's ``ExecStartPre`` would
otherwise turn each late error into a restart loop). Every problem is collected and reported at
once, as ``file:line: key: what is wrong (fix)``, and no message ever contains a secret: secret
files are read only to check that they are readable, UTF-8 and non-empty.

Checked: secrets and files every ``*_file`` key names (or the ``env:NAME`` they reference), the
API listen address, the API token policy, IP pools that overlap (VIP pool, node pool and
load-balancer ranges, within and across networks) and a data directory the service can write.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collector.config import locate, parse_ip_range
from collector.errors import ConfigError
from collector.settings.secrets import SecretRef
from collector.settings.tls import TlsClientSettings
from hciwatch.config import AppConfig, default_config, load_config
from hciwatch.redact import redact

_SECRET_NAME = re.compile(r"token|password|secret|connection_string|url_file|headers_file|key_file|kubeconfig")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]{1,63})*$")


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; ``:port`` = loopback, ``*:port`` = all) → (host, port); ``ValueError`` says why."""
    t = text.strip()
    host, sep, port_text = t.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:8080 or 0.0.0.0:8080)")
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} in {text!r} is not a number (use 1-65535, or 0 for any free port)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} in {text!r} is out of range (use 1-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IPv6 address") from None
        return host, port
    if host == "":
        return "127.0.0.1", port
    if host == "*":
        return "0.0.0.0", port
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.match(host) or host.replace(".", "").isdigit():
            raise ValueError(f"{host!r} in {text!r} is neither an IP address nor a host name") from None
    return host, port


def _fields(model: BaseModel, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """(key path, field name, value) of every set field, nested models included (a ``tls`` table whole)."""
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(value, BaseModel) and not isinstance(value, TlsClientSettings):
            yield from _fields(value, path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _fields(item, f"{path}[{i}]")
        if value is not None:
            yield path, name, value


def _check_file(ref: str, *, secret: bool, base: Path) -> str | None:
    """Why ``ref`` (a path or ``env:NAME``) cannot be used, or None. Never quotes the content."""
    if ref.startswith("env:"):
        var = ref[4:]
        if not var:
            return "env: needs a variable name (env:NAME)"
        value = os.environ.get(var)
        if value is None:
            return f"environment variable {var} is not set (export it, or point the key at a file)"
        if secret and not value.strip():
            return f"environment variable {var} is empty"
        return None
    p = Path(ref).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        return f"file {p} does not exist (create it, or fix the path)"
    if p.is_dir():
        return f"{p} is a directory, not a file"
    try:
        data = p.read_bytes()
    except OSError as exc:
        return f"cannot read {p}: {exc.strerror} (make it readable by the user hciwatch runs as)"
    if secret:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"{p} is not UTF-8 text (byte {exc.start}); write the secret as plain UTF-8 text"
        if not text.strip():
            return f"{p} is empty; put the secret in it"
    return None


def _check_secrets(cfg: AppConfig, base: Path, where: Any, problems: list[str]) -> None:
    sections: list[tuple[str, BaseModel]] = [("api", cfg.api), ("store.lake", cfg.collector.store.lake)]
    sections += [(f"sources[{i}]", s) for i, s in enumerate(cfg.sources)]
    sections += [(f"exporters[{i}]", e) for i, e in enumerate(cfg.exporters)]
    for prefix, model in sections:
        for path, name, value in _fields(model, prefix):
            # the shared vocabulary (collector.settings) checks its own types: secrets and TLS files
            if isinstance(value, SecretRef | TlsClientSettings):
                try:
                    value.read(key=path) if isinstance(value, SecretRef) else value.ssl_context(key=path)
                except ConfigError as exc:
                    problems.append(f"{where(path)}: {exc}")
                continue
            if (name.endswith("_file") or name == "kubeconfig") and isinstance(value, str | Path):
                why = _check_file(str(value), secret=bool(_SECRET_NAME.search(name)), base=base)
            elif isinstance(value, str) and value.startswith("env:"):
                why = _check_file(value, secret=True, base=base)
            else:
                continue
            if why:
                problems.append(f"{where(path)}: {path}: {why}")


def _check_api(cfg: AppConfig, where: Any, problems: list[str]) -> None:
    try:
        parse_listen(cfg.api.listen)
    except ValueError as exc:
        problems.append(f"{where('api.listen')}: api.listen: {exc}")
    if cfg.api.token_file is None and not cfg.api.allow_unauthenticated:
        problems.append(
            f"{where('api')}: api.token_file: required (the HTTP API needs a bearer token); set it to a file or "
            "env:NAME holding the token, or api.allow_unauthenticated = true for local testing only"
        )


def _check_pools(cfg: AppConfig, where: Any, problems: list[str]) -> None:
    ranges: list[tuple[str, str, int, int]] = []  # (key path, label, first, last)
    for i, net in enumerate(cfg.collector.networks):
        key = f"networks[{i}]"
        ranges.append((f"{key}.vip_pool_start", f"{net.name} VIP pool", *_ints(*net.vip_pool)))
        if net.node_pool:
            ranges.append((f"{key}.k8s_node_ip_pool_start", f"{net.name} node pool", *_ints(*net.node_pool)))
        for j, r in enumerate(net.lb_ranges):
            a, b = parse_ip_range(r)
            ranges.append((f"{key}.lb_ranges[{j}]", f"{net.name} lb range {r}", *_ints(str(a), str(b))))
    for x in range(len(ranges)):
        for y in range(x + 1, len(ranges)):
            kx, lx, ax, bx = ranges[x]
            ky, ly, ay, by = ranges[y]
            if ax <= by and ay <= bx:
                lo, hi = (v % (1 << 128) for v in (max(ax, ay), min(bx, by)))
                six = max(ax, ay) >= 1 << 128
                first, last = (ipaddress.IPv6Address(v) if six else ipaddress.IPv4Address(v) for v in (lo, hi))
                span = f"{first}" + (f"-{last}" if hi != lo else "")
                problems.append(
                    f"{where(ky)}: {ky}: {ly} overlaps {lx} ({kx}) at {span}; "
                    "pools must not share addresses (Kubernetes would hand the same IP out twice)"
                )


def _ints(a: str, b: str) -> tuple[int, int]:
    """Pool ends as integers; IPv6 is shifted above IPv4 so the two families never compare equal."""
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    shift = 1 << 128 if x.version == 6 else 0
    return int(x) + shift, int(y) + shift


def _check_data_dir(cfg: AppConfig, problems: list[str], label: str) -> None:
    d = cfg.data_dir
    probe = d
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        problems.append(f"{label}: data_dir: {probe} is a file, not a directory (choose another data_dir)")
    elif not os.access(probe, os.W_OK | os.X_OK):
        what = "data dir" if probe == d else f"parent {probe} of the data dir"
        problems.append(
            f"{label}: data_dir: {what} {d if probe == d else ''} is not writable by this user".replace("  ", " ")
            + " (fix its permissions, or choose another data_dir / --data-dir)"
        )


def preflight(cfg: AppConfig, *, text: str | None = None) -> list[str]:
    """Every reason ``hciwatch run`` would refuse ``cfg``, one redacted line each (empty = ready)."""
    file = str(cfg.path) if cfg.path else "<default config>"
    if text is None and cfg.path is not None:
        try:
            text = cfg.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
    body = text or ""

    def where(path: str) -> str:
        line = locate(body, path) if body else None
        return f"{file}:{line}" if line else file

    base = cfg.path.parent if cfg.path else Path.cwd()
    problems: list[str] = []
    _check_api(cfg, where, problems)
    _check_secrets(cfg, base, where, problems)
    _check_pools(cfg, where, problems)
    _check_data_dir(cfg, problems, where("data_dir"))
    _check_lake(cfg, where, problems)
    return [redact(p) for p in problems]


def _check_lake(cfg: AppConfig, where: Any, problems: list[str]) -> None:
    """A lake URL the store cannot open (scheme, account, credentials) stops ``run`` before it starts."""
    lake = cfg.collector.store.lake
    if not lake.url or any("store.lake" in p for p in problems):
        return
    from collector.lake import Lake

    try:
        Lake.open(lake.url, lake)
    except ConfigError as exc:
        problems.append(f"{where('store.lake.url')}: {exc}")


def load_for_run(path: Path | str | None, *, data_dir: str | None = None) -> AppConfig:
    """What ``run`` and ``check-config`` both do: validate the file, then everything run needs.

    Raises one :class:`ConfigError` listing every problem (schema first; the run-time checks
    of :mod:`hciwatch.preflight` need a config that parsed).
    """
    cfg = load_config(path) if path else default_config()
    if data_dir:
        cfg = replace(cfg, collector=cfg.collector.model_copy(update={"data_dir": str(Path(data_dir).resolve())}))
    problems = preflight(cfg)
    if problems:
        file = str(path) if path else "<default config>"
        raise ConfigError(f"{file}: {len(problems)} problem(s) in the configuration", file=file, problems=problems)
    return cfg
