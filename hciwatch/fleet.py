"""The fleet view: one lake written by many sites, queried as one.

Each site's instance records what its analyst views need to know about it (its networks and pool
settings) next to its data, at ``<lake>/_sites/<site>.json``; a central reader
(``hciwatch sql --lake URL``) builds the fleet analyst views (:func:`analytics.views.fleet_analyst_views`)
from every site's record, so ``pool_usage`` counts each site against its own pools without a
central copy of every site's configuration. The ``_`` prefix keeps the records out of every
table listing (readers skip ``_``/``.`` names).

Queries run on DuckDB over Arrow datasets of the lake (no DuckDB network extension), in the same
locked-down sandbox as ``hciwatch sql --data-dir``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from analytics.settings import PoolSettings
from analytics.views import SiteConfig, fleet_analyst_views
from collector.config import NetworkSettings
from collector.errors import ConfigError, StoreError
from collector.lake import Lake, LakeSettings
from hciwatch.config import AppConfig

log = logging.getLogger(__name__)

SITES_DIR = "_sites"
MANIFEST_VERSION = 1


def site_manifest(cfg: AppConfig) -> dict[str, Any]:
    """What the fleet views need to know about this site."""
    return {
        "version": MANIFEST_VERSION,
        "site": cfg.collector.site.name,
        "environment": cfg.collector.site.environment,
        "networks": [n.model_dump(mode="json") for n in cfg.collector.networks],
        "pools": cfg.analytics.pools.model_dump(mode="json"),
    }


def write_site_manifest(lake: Lake, cfg: AppConfig) -> None:
    """Record this site's networks and pools in the lake (skipped when unchanged)."""
    rel = f"{SITES_DIR}/{cfg.collector.site.name}.json"
    body = json.dumps(site_manifest(cfg), indent=1, sort_keys=True).encode("utf-8")
    try:
        if lake.read_bytes(rel) == body:
            return
        lake.write_bytes(rel, body)
    except (OSError, StoreError) as exc:  # the fleet's pool view misses this site's pools; the data is fine
        log.warning("could not record the site in the lake (%s): %s", rel, exc)


def read_site_configs(lake: Lake) -> dict[str, SiteConfig]:
    """Every site's networks and pools recorded in the lake (unreadable records are skipped, logged)."""
    out: dict[str, SiteConfig] = {}
    try:
        names = [
            n
            for n in lake.fs.get_file_info(_selector(lake))
            if n.base_name.endswith(".json") and not n.base_name.startswith(".")
        ]
    except (OSError, StoreError) as exc:
        log.warning("cannot list %s/%s: %s", lake.url, SITES_DIR, exc)
        return out
    for info in names:
        raw = lake.read_bytes(f"{SITES_DIR}/{info.base_name}")
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
            site = str(doc["site"])
            networks = [NetworkSettings.model_validate(n) for n in doc.get("networks", [])]
            pools = PoolSettings.model_validate(doc.get("pools", {}))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("skipping the site record %s: %s", info.base_name, str(exc).splitlines()[0])
            continue
        out[site] = (networks, pools)
    return out


def _selector(lake: Lake) -> Any:
    import pyarrow.fs as pafs

    return pafs.FileSelector(lake.path(SITES_DIR), allow_not_found=True)


def fleet_views(lake: Lake, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The analyst views over the whole lake (plus ``extra``)."""
    return {**dict(extra or {}), **fleet_analyst_views(read_site_configs(lake))}


class FleetViews:
    """A central reader's view of a lake: how to open it, and its fleet views kept fresh.

    The API in central mode (``hciwatch serve-fleet``) hands :attr:`settings` to its query
    workers (each opens the lake itself: a filesystem handle does not cross a process boundary,
    settings carry only references to secrets) and takes the views from :meth:`views`, rebuilt from
    the site records at most every ``ttl_s`` seconds so that a site joining the fleet shows up
    without a restart, and 200 site records are not read on every query.
    """

    def __init__(self, settings: LakeSettings, *, ttl_s: float = 60.0, extra: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self.extra = dict(extra or {})
        self.lake = Lake.open(settings.url, settings)
        self._views: dict[str, str] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def views(self) -> dict[str, str]:
        """The fleet views (blocking: reads the site records when the cache is older than ``ttl_s``)."""
        with self._lock:
            now = time.monotonic()
            if self._views is None or now - self._at > self.ttl_s:
                self._views = fleet_views(self.lake, self.extra)
                self._at = now
            return self._views

    def reachable(self) -> bool:
        """True when the lake root can be listed (readiness of a central reader)."""
        try:
            self.lake.dirs("")
        except (OSError, StoreError):
            return False
        return True


def lake_from_cli(url: str, config_path: str | None = None) -> Lake:
    """The lake ``hciwatch sql --lake URL`` reads.

    Credentials: ``[store.lake]`` of ``--config`` when given (its ``url`` is replaced by ``URL``);
    otherwise the environment the Azure and AWS tools use: ``AZURE_STORAGE_CONNECTION_STRING``
    (or, with none, ``DefaultAzureCredential``) and the AWS default chain with ``AWS_ENDPOINT_URL``.
    """
    settings = LakeSettings()
    if config_path:
        from hciwatch.config import load_config

        settings = load_config(config_path).collector.store.lake
    elif "://" in url and url.split("://", 1)[0] in ("az", "abfs", "abfss"):
        if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
            settings = LakeSettings.model_validate({"connection_string": "env:AZURE_STORAGE_CONNECTION_STRING"})
    elif url.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        settings = LakeSettings(endpoint=os.environ["AWS_ENDPOINT_URL"])
    try:
        settings = settings.model_copy(update={"url": url})
    except ValidationError as exc:  # pragma: no cover - model_copy does not validate
        raise ConfigError(str(exc)) from None
    lake = Lake.open(url, settings)
    if lake.local and not Path(lake.root).is_dir():
        raise ConfigError(f"--lake {url}: no such directory")
    return lake


# -- DDL for other engines over the same layout -------------------------------------------------


# what each engine calls the store's column types (timestamps, floats, integers, label maps, text)
_KUSTO_TYPES = ("datetime", "real", "long", "dynamic", "string")
_SPARK_TYPES = ("TIMESTAMP", "DOUBLE", "BIGINT", "MAP<STRING, STRING>", "STRING")


def _engine_type(t: Any, names: tuple[str, str, str, str, str]) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    checks: tuple[Callable[[Any], bool], ...] = (
        pa.types.is_timestamp,
        pa.types.is_floating,
        pa.types.is_integer,
        pa.types.is_map,
    )
    return next((name for check, name in zip(checks, names, strict=False) if check(t)), names[-1])


def https_url(url: str) -> str:
    """The HTTPS address of an ``az://``/``abfs[s]://`` lake root (for ADX), else ``url``."""
    from urllib.parse import urlsplit

    p = urlsplit(url)
    if p.scheme in ("abfs", "abfss") and "@" in p.netloc:
        container, host = p.netloc.split("@", 1)
        return f"https://{host.replace('.dfs.', '.blob.')}/{container}{p.path}".rstrip("/")
    if p.scheme == "az":
        return f"https://<account>.blob.core.windows.net/{p.netloc}{p.path}".rstrip("/")
    return url.rstrip("/")


def adx_ddl(url: str) -> str:
    """Azure Data Explorer external tables over the lake (``site`` and ``date`` from the path)."""
    from collector.schema import TABLE_SCHEMAS

    base = https_url(url)
    out = []
    for name, schema in TABLE_SCHEMAS.items():
        cols = ", ".join(f"{f.name}:{_engine_type(f.type, _KUSTO_TYPES)}" for f in schema)
        out.append(
            f".create-or-alter external table hciwatch_{name} ({cols})\n"
            "kind = storage\n"
            "partition by (site:string, date:datetime)\n"
            'pathformat = ("site=" site "/date=" datetime_pattern("yyyy-MM-dd", date))\n'
            "dataformat = parquet\n"
            f"(h@'{base}/{name};managed_identity=system')"
        )
    return "\n\n".join(out) + "\n"


def spark_ddl(url: str) -> str:
    """Spark SQL (Fabric lakehouse, Synapse, Databricks) tables over the lake, partitions discovered."""
    from collector.schema import TABLE_SCHEMAS

    root = url.rstrip("/")
    out = []
    for name, schema in TABLE_SCHEMAS.items():
        cols = ", ".join(f"`{f.name}` {_engine_type(f.type, _SPARK_TYPES)}" for f in schema)
        out.append(
            f"CREATE TABLE IF NOT EXISTS hciwatch_{name} ({cols}, `site` STRING, `date` DATE)\n"
            f"USING PARQUET PARTITIONED BY (site, date) LOCATION '{root}/{name}';\n"
            f"MSCK REPAIR TABLE hciwatch_{name};  -- run again to pick up new partitions"
        )
    return "\n\n".join(out) + "\n"
