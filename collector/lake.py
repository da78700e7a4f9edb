"""The lake: where the store's Parquet files live (local disk, Azure Blob/ADLS or S3), behind one API.

Layout (shared with every reader through :mod:`collector.store_layout`)::

    <root>/<table>/site=<site>/date=YYYY-MM-DD/part-<writer>-<first ts ms>-<seq>[-<tag>]-<rand>.parquet
    <root>/<table>/date=YYYY-MM-DD/part-…parquet        (before sites: still read, as site NULL)

``<root>`` is a local directory (the default: the data dir), ``az://<container>/<prefix>``,
``abfs[s]://<container>@<account>.dfs.core.windows.net/<prefix>`` or ``s3://<bucket>/<prefix>``.
Every site of a fleet writes its own ``site=`` prefix, so one lake holds the fleet and nothing
two instances write can collide (the writer id and a random suffix are in every file name).

Why pyarrow filesystems (``AzureFileSystem``, ``S3FileSystem``) and not fsspec or DuckDB's
extensions: they ship in the pyarrow wheel the store already uses (no extra dependency, no
download at run time), they are what ``pyarrow.dataset`` reads through (and DuckDB scans a
pyarrow dataset without any network extension), and both speak to Azurite and moto_server.

Why files are written differently per backend: on local disk a file is written under a hidden
temporary name, fsynced and renamed (readers only ever see whole files); on object storage a
rename is a copy, while an upload is atomic by itself (S3 PutObject / multipart completion, Azure
Put Block List), so a file is serialised in memory and uploaded straight to its final name.
Retention deletes whole ``site=<s>/date=<d>/`` prefixes.

Credentials come through :class:`collector.settings.SecretRef` (a file or ``env:NAME``):
Azure takes a connection string, an account key or a SAS token, and with none of them
``DefaultAzureCredential`` (managed identity, workload identity, environment, Azure CLI) as the
Azure SDK resolves it; S3 takes an access key pair, and with none of them the AWS default chain.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.errors import ConfigError, StoreError
from collector.settings import SecretRef

log = logging.getLogger(__name__)

__all__ = [
    "Lake",
    "LakeFile",
    "LakeSettings",
    "parse_connection_string",
    "write_parquet_atomic",
    "writer_id",
]

#: The Hive partition columns a reader gets: ``site`` (NULL for files of the layout without it), ``date``.
SITE_FIELD: pa.Field[Any] = pa.field("site", pa.string())
DATE_FIELD: pa.Field[Any] = pa.field("date", pa.date32())
PARTITION_SCHEMA = pa.schema([SITE_FIELD, DATE_FIELD])

# <table>/[site=<s>/]date=<d>/<visible name>.parquet (dot and underscore names are temporary or journals)
_FILE_RE = re.compile(
    r"^(?:site=(?P<site>[A-Za-z0-9][A-Za-z0-9._-]*)/)?date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<name>[^./_][^/]*\.parquet)$"
)
# a compaction in flight: <table>/[site=<s>/]date=<d>/_compact-<id>.json (see collector.lake_compact)
MANIFEST_RE = re.compile(
    r"^(?:site=(?P<site>[A-Za-z0-9][A-Za-z0-9._-]*)/)?date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"_compact-(?P<id>[0-9a-f]+)\.json$"
)
COMPACT_MANIFEST = "_compact-{id}.json"
_WRITER_RE = re.compile(r"[^A-Za-z0-9.]+")
_REMOTE_SCHEMES = ("az", "abfs", "abfss", "s3")
# The write options every file of the store uses: zstd; dictionary pages for the string columns
# only (a float column's dictionary is abandoned after the first page, after the work of building
# it); min/max statistics for the flat columns readers prune on, not for the ``labels`` map, whose
# per-string statistics cost ~40 % of a samples write and can prune nothing (DuckDB does not push
# map-element filters into Parquet). See :func:`write_opts`.
WRITE_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
}


@functools.lru_cache(maxsize=32)
def _column_opts(schema: pa.Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dictionary: list[str] = []
    stats: list[str] = []
    for f in schema:
        t = f.type
        if pa.types.is_map(t):
            dictionary += [f"{f.name}.key_value.key", f"{f.name}.key_value.value"]
            continue
        if pa.types.is_nested(t):
            continue
        stats.append(f.name)
        if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            dictionary.append(f.name)
    return tuple(dictionary), tuple(stats)


def write_opts(schema: pa.Schema) -> dict[str, Any]:
    """``pq.write_table`` options for a table of ``schema`` (see :data:`WRITE_OPTS`)."""
    dictionary, stats = _column_opts(schema)
    return {**WRITE_OPTS, "use_dictionary": list(dictionary), "write_statistics": list(stats)}


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, final: Path, *, row_group_size: int = 256_000) -> None:
    """Write ``table`` to local ``final`` so that no reader ever sees a partial file.

    Under a hidden temporary name in the final directory, fsynced, renamed, directory fsynced.
    """
    _write_atomic(
        final, lambda fh: pq.write_table(table, fh, row_group_size=row_group_size, **write_opts(table.schema))
    )


def write_bytes_atomic(final: Path, data: bytes) -> None:
    """The same for a small local file of bytes."""
    _write_atomic(final, lambda fh: fh.write(data))


def _write_atomic(final: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` into a hidden temporary in ``final``'s directory, fsync, rename, fsync the directory."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writer_id(name: str = "") -> str:
    """The writer part of file names: ``name`` or the host name, without dashes (they separate fields)."""
    return _WRITER_RE.sub("_", name or socket.gethostname()).strip("_") or "writer"


class LakeSettings(BaseModel):
    """``[store.lake]``: where the Parquet files go and the credentials to get there.

    An empty ``url`` keeps them in the data dir. ``endpoint`` points at an emulator or a private
    endpoint (Azurite: ``http://127.0.0.1:10000``; moto/MinIO: ``http://127.0.0.1:5000``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default="", description="az://, abfs[s]://, s3:// or a local path; empty: the data dir")
    connection_string: SecretRef | None = Field(default=None, description="Azure connection string (file or env:)")
    account_name: str = Field(default="", description="Azure storage account (unless in the URL/connection string)")
    account_key: SecretRef | None = Field(default=None, description="Azure account key (file or env:)")
    sas_token: SecretRef | None = Field(default=None, description="Azure SAS token (file or env:)")
    access_key_id: SecretRef | None = Field(default=None, description="S3 access key id (file or env:)")
    secret_access_key: SecretRef | None = Field(default=None, description="S3 secret access key (file or env:)")
    region: str = Field(default="", description="S3 region")
    endpoint: str = Field(default="", description="http(s)://host:port of an emulator or private endpoint")
    writer: str = Field(default="", description="writer id in file names; default: the host name")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        scheme = urlsplit(v).scheme if "://" in v else ""
        if scheme and scheme not in (*_REMOTE_SCHEMES, "file"):
            raise ValueError(f"unknown lake scheme {scheme!r} (use az://, abfs://, abfss://, s3:// or a path)")
        return v

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("endpoint must be http://host:port or https://host:port")
        return v


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;…`` of an Azure Storage connection string (values may contain ``=``)."""
    out: dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError("store.lake.connection_string: not Key=Value;… (an Azure Storage connection string)")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One committed file: its path in the filesystem, partition values and size."""

    path: str
    site: str | None
    date: str
    size: int


def _azure(url: str, s: LakeSettings) -> tuple[pafs.FileSystem, str]:
    parts = urlsplit(url)
    container, account = parts.netloc, s.account_name
    if "@" in container:  # abfs://<container>@<account>.dfs.core.windows.net/…
        container, host = container.split("@", 1)
        account = account or host.split(".", 1)[0]
    kw: dict[str, Any] = {}
    endpoint = s.endpoint
    if s.connection_string is not None:
        cs = parse_connection_string(s.connection_string.read(key="store.lake.connection_string"))
        if cs.get("UseDevelopmentStorage", "").lower() == "true":
            cs.setdefault("AccountName", "devstoreaccount1")
            cs.setdefault(
                "AccountKey",
                "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
            )
            cs.setdefault("BlobEndpoint", "http://127.0.0.1:10000/devstoreaccount1")
        account = account or cs.get("AccountName", "")
        if cs.get("AccountKey"):
            kw["account_key"] = cs["AccountKey"]
        if cs.get("SharedAccessSignature"):
            kw["sas_token"] = cs["SharedAccessSignature"]
        endpoint = endpoint or cs.get("BlobEndpoint", "")
    if s.account_key is not None:
        kw["account_key"] = s.account_key.read(key="store.lake.account_key")
    if s.sas_token is not None:
        kw["sas_token"] = s.sas_token.read(key="store.lake.sas_token").lstrip("?")
    if not account:
        raise ConfigError(f"store.lake: {redact_url(url)} names no storage account (set store.lake.account_name)")
    if endpoint:
        ep = urlsplit(endpoint)
        kw.update(
            blob_storage_authority=ep.netloc,
            blob_storage_scheme=ep.scheme,
            dfs_storage_authority=ep.netloc,
            dfs_storage_scheme=ep.scheme,
        )
    # without a key or SAS, pyarrow's Azure filesystem uses DefaultAzureCredential
    fs = pafs.AzureFileSystem(account_name=account, **kw)
    return fs, f"{container}/{parts.path.strip('/')}".rstrip("/")


def _s3(url: str, s: LakeSettings) -> tuple[pafs.FileSystem, str]:
    parts = urlsplit(url)
    kw: dict[str, Any] = {}
    if s.access_key_id is not None or s.secret_access_key is not None:
        if s.access_key_id is None or s.secret_access_key is None:
            raise ConfigError("store.lake: access_key_id and secret_access_key go together")
        kw["access_key"] = s.access_key_id.read(key="store.lake.access_key_id")
        kw["secret_key"] = s.secret_access_key.read(key="store.lake.secret_access_key")
    if s.region:
        kw["region"] = s.region
    if s.endpoint:
        kw["endpoint_override"] = s.endpoint
    fs = pafs.S3FileSystem(**kw)
    return fs, f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")


def redact_url(url: str) -> str:
    """A lake URL fit for logs: scheme, container/bucket and path (no query string, no user info)."""
    if "://" not in url:
        return url
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.rsplit('@', 1)[-1] if p.scheme == 's3' else p.netloc}{p.path}"


class Lake:
    """One lake root on one filesystem; every path argument is relative to the root."""

    def __init__(
        self, fs: pafs.FileSystem, root: str, *, url: str, local: bool, settings: LakeSettings | None = None
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url  # for messages (redacted)
        self.local = local
        # how it was opened (the URL and the references to its credentials, never their values)
        self.settings = settings

    def pointer(self, site: str) -> dict[str, Any]:
        """What a reader of the data dir needs to find this lake again (``<data_dir>/lake.json``)."""
        assert self.settings is not None
        return {"site": site, "lake": self.settings.model_dump(mode="json")}

    @classmethod
    def from_pointer(cls, doc: dict[str, Any]) -> tuple[Lake, str]:
        """The lake and site a data dir's ``lake.json`` names (:class:`ConfigError` when unusable)."""
        try:
            settings = LakeSettings.model_validate(doc["lake"])
            site = str(doc["site"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"lake.json is not usable: {exc}") from None
        return cls.open(settings.url, settings), site

    @classmethod
    def local_dir(cls, path: Path | str) -> Lake:
        """The lake in a local directory (the store's default: its data dir)."""
        p = Path(path).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), p.as_posix(), url=str(p), local=True, settings=LakeSettings(url=str(p)))

    @classmethod
    def open(cls, url: str | Path, settings: LakeSettings | None = None) -> Lake:
        """The lake at ``url`` (a path or ``file://``, ``az://``, ``abfs[s]://``, ``s3://``).

        Raises:
            ConfigError: an unknown scheme, a missing account or an unreadable credential.
        """
        s = settings or LakeSettings()
        text = str(url)
        scheme = urlsplit(text).scheme if "://" in text else ""
        if scheme in ("", "file"):
            return cls.local_dir(urlsplit(text).path if scheme == "file" else text)
        try:
            if scheme in ("az", "abfs", "abfss"):
                fs, root = _azure(text, s)
            elif scheme == "s3":
                fs, root = _s3(text, s)
            else:
                raise ConfigError(f"unknown lake scheme {scheme!r} in {redact_url(text)} (use az://, abfs://, s3://)")
        except (pa.ArrowException, ValueError) as exc:
            raise ConfigError(f"store.lake: cannot open {redact_url(text)}: {exc}") from None
        if not root.split("/", 1)[0]:
            raise ConfigError(f"store.lake: {redact_url(text)} names no container or bucket")
        return cls(fs, root, url=redact_url(text), local=False, settings=s.model_copy(update={"url": text}))

    # -- paths ---------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root."""
        return "/".join([self.root, *(p.strip("/") for p in parts if p)])

    @staticmethod
    def partition_dir(table: str, day: str, site: str | None) -> str:
        """``<table>/site=<s>/date=<d>`` (``<table>/date=<d>`` without a site: the layout before sites)."""
        return f"{table}/site={site}/date={day}" if site else f"{table}/date={day}"

    # -- listing -------------------------------------------------------------------------------

    def files(self, table: str, *, sites: set[str] | None = None) -> list[LakeFile]:
        """The committed Parquet files of one table, both layouts, oldest partition first.

        Hidden names (temporary, staged), empty objects (an upload not committed) and anything
        outside the layout are left out, so a reader never opens a partial file.
        """
        base = self.path(table)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot list {self.url}/{table}: {exc}") from exc
        out: list[LakeFile] = []
        manifests: list[str] = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(base) + 1 :]
            m = _FILE_RE.match(rel)
            if m is None:
                mm = MANIFEST_RE.match(rel)
                if mm is not None and (sites is None or mm["site"] in sites):
                    manifests.append(info.path)
                continue
            if (sites is not None and m["site"] not in sites) or not info.size:
                # size 0: an upload in progress, or one whose writer died (kill -9) — pyarrow's Azure
                # output stream creates the blob empty at open and commits the content at close (a
                # Parquet file is never empty)
                continue
            out.append(LakeFile(info.path, m["site"], m["date"], int(info.size or 0)))
        if manifests:
            hidden = self.superseded(manifests, {f.path for f in out})
            out = [f for f in out if f.path not in hidden]
        out.sort(key=lambda f: (f.date, f.site or "", f.path))
        return out

    def read_manifest(self, path: str) -> tuple[str, set[str]] | None:
        """A compaction manifest's target and sources (full paths); None when gone or unreadable
        (an unreadable manifest must not hide data: it is logged and ignored)."""
        part_dir = path.rsplit("/", 1)[0]
        try:
            with self.fs.open_input_stream(path) as fh:
                doc = json.loads(bytes(fh.read()))
            return f"{part_dir}/{doc['target']}", {f"{part_dir}/{name}" for name in doc["sources"]}
        except FileNotFoundError:
            return None  # finished between the listing and this read: the listing's files are whole
        except (OSError, pa.ArrowException, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable compaction manifest %s: %s", path, exc)
            return None

    def superseded(self, manifests: list[str], present: set[str]) -> set[str]:
        """Files a reader must skip because a compaction in flight replaced them (or lost a race).

        A manifest ``_compact-<id>.json`` in a partition names its ``target`` and ``sources``.
        It takes effect only once its target exists with content (``present`` holds no empty
        files: the upload that commits the target's content is the switch): from then on its
        sources are hidden. Manifests are taken in id order; one
        whose sources overlap an accepted one's (two compactors raced) is rejected and its target
        hidden, so a row is never counted twice. A manifest that cannot be read hides nothing
        but its own target (an unreadable manifest must not hide data).
        """
        hidden: set[str] = set()
        claimed: dict[str, set[str]] = {}
        for path in sorted(manifests, key=lambda p: p.rsplit("/", 1)[1]):
            got = self.read_manifest(path)
            if got is None:
                continue
            target, sources = got
            if target not in present:
                continue  # not switched yet: the sources are the data
            taken = claimed.setdefault(path.rsplit("/", 1)[0], set())
            if sources & taken:
                hidden.add(target)  # a second compactor raced the first: its copy is not counted
                continue
            taken |= sources
            hidden |= sources
        return hidden

    def dirs(self, rel: str) -> list[str]:
        """Names of the directories (prefixes) directly under ``rel``."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel), allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot list {self.url}/{rel}: {exc}") from exc
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound)

    def has_table(self, table: str) -> bool:
        return bool(self.fs.get_file_info(self.path(table)).type == pafs.FileType.Directory)

    # -- writing -------------------------------------------------------------------------------

    def write_parquet(self, table: pa.Table, rel: str, *, row_group_size: int = 256_000) -> int:
        """Write ``table`` to ``rel`` so that no reader sees a partial file; returns its size.

        Raises :class:`OSError` (local) or :class:`StoreError` (object storage) when it fails.
        """
        if self.local:
            final = Path(self.path(rel))
            write_parquet_atomic(table, final, row_group_size=row_group_size)
            return final.stat().st_size
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, row_group_size=row_group_size, **write_opts(table.schema))
        return self.write_bytes(rel, sink.getvalue())

    def write_bytes(self, rel: str, data: bytes | pa.Buffer) -> int:
        """Upload ``data`` to ``rel`` in one piece (local: atomic replace)."""
        path = self.path(rel)
        try:
            if self.local:
                write_bytes_atomic(Path(path), bytes(data))
                return len(data)
            with self.fs.open_output_stream(path) as out:
                out.write(data)
        except pa.ArrowException as exc:
            raise StoreError(f"cannot write {self.url}/{rel}: {exc}") from exc
        except OSError as exc:
            if self.local:
                raise
            raise StoreError(f"cannot write {self.url}/{rel}: {exc}") from exc
        return len(data)

    def read_bytes(self, rel: str) -> bytes | None:
        """The content of ``rel``, None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            if self.fs.get_file_info(self.path(rel)).type == pafs.FileType.NotFound:
                return None
            raise StoreError(f"cannot read {self.url}/{rel}: {exc}") from exc

    def delete_dir(self, rel: str) -> None:
        """Delete everything under ``rel`` (object storage: a prefix delete)."""
        try:
            self.fs.delete_dir(self.path(rel))
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot delete {self.url}/{rel}: {exc}") from exc

    def delete_file(self, path: str) -> None:
        """Delete one file by its filesystem path (as :meth:`files` returns it)."""
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot delete {path}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    def dataset(self, table: str, schema: pa.Schema, *, sites: set[str] | None = None) -> ds.Dataset | pa.Table:
        """One table as an Arrow dataset over its committed files (an empty table if none).

        ``schema`` is the reader's schema (stored columns, then ``site`` and ``date``); files of
        the layout before sites read with ``site`` NULL.
        """
        files = [f.path for f in self.files(table, sites=sites)]
        if not files:
            return schema.empty_table()
        return ds.dataset(
            files,
            schema=schema,
            format="parquet",
            filesystem=self.fs,
            partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=self.path(table),
        )

    def new_name(self, writer: str, first_ms: int, seq: int, tag: str = "") -> str:
        """A file name no other writer or restart of this one can produce."""
        mark = f"-{tag}" if tag else ""
        return f"part-{writer}-{first_ms:013d}-{seq:06d}{mark}-{secrets.token_hex(3)}.parquet"
