"""The first hour's mistakes, as a table: every bad input gets an exit code and a message, never a traceback.

Each row is a command a user might type with the input that is wrong, the exit code the CLI's
one error policy gives it (2 = usage/config, 1 = run time) and words the message must contain
(what was wrong and, where there is one, the fix). Rows run in-process through ``main`` (what the
console script calls) except the one that needs another user (a read-only data dir as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hciwatch.cli import main
from tests.fixtures.mounts import mount_tmpfs, remount_read_only, umount

NET = """
[[networks]]
name = "vnet-a"
vip_pool_start = "10.40.0.200"
vip_pool_end = "10.40.0.231"
k8s_node_ip_pool_start = "10.40.0.20"
k8s_node_ip_pool_end = "10.40.0.59"
"""


@dataclass
class Ctx:
    """Paths the rows refer to (a fresh temporary directory per row)."""

    tmp: Path
    data: Path  # a populated data dir
    token: Path  # a good token file
    port: int  # a port held by another socket

    def cfg(self, body: str, name: str = "c.toml") -> str:
        p = self.tmp / name
        p.write_text(body)
        return str(p)

    def ok_api(self, extra: str = "") -> str:
        return f'[api]\ntoken_file = "{self.token}"\n{extra}'


@dataclass(frozen=True)
class Row:
    name: str
    argv: Callable[[Ctx], list[str]]
    code: int
    says: tuple[str, ...]
    never: tuple[str, ...] = ()


def _nested(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth + "\n"


ROWS: list[Row] = [
    # --- usage --------------------------------------------------------------------------------
    Row("no command", lambda c: [], 2, ("required: COMMAND",)),
    Row("unknown command", lambda c: ["frobnicate"], 2, ("invalid choice", "frobnicate")),
    Row("bad --log-format", lambda c: ["--log-format", "xml", "alerts"], 2, ("invalid choice", "text", "json")),
    Row("bad --log-level after verb", lambda c: ["alerts", "--log-level", "loud"], 2, ("invalid choice", "debug")),
    # --- alerts -------------------------------------------------------------------------------
    Row(
        "alerts without --data-dir",
        lambda c: ["alerts"],
        2,
        ("data dir data does not exist", "fix: give --data-dir"),
    ),
    Row("alerts wrong --data-dir", lambda c: ["alerts", "--data-dir", str(c.tmp / "nope")], 2, ("does not exist",)),
    Row(
        "alerts --data-dir is a plain dir",
        lambda c: ["alerts", "--data-dir", str(c.tmp)],
        2,
        ("not an hciwatch data dir", "no samples/"),
    ),
    Row(
        "alerts --kind invalid",
        lambda c: ["alerts", "--data-dir", str(c.data), "--kind", "vip_pool"],
        2,
        ("invalid choice: 'vip_pool'", "vip_pool_exhaustion"),
    ),
    Row("alerts --status invalid", lambda c: ["alerts", "--status", "burning"], 2, ("invalid choice", "open")),
    Row(
        "alerts --config missing file",
        lambda c: ["alerts", "--config", str(c.tmp / "none.toml")],
        2,
        ("cannot read config",),
    ),
    # --- import / replay / anomalies / eval ---------------------------------------------------
    Row("import nothere.csv", lambda c: ["import", str(c.tmp / "nothere.csv")], 2, ("file not found", "nothere.csv")),
    Row("replay missing capture", lambda c: ["replay", str(c.tmp / "x.jsonl.zst")], 2, ("capture file not found",)),
    Row("anomalies missing csv", lambda c: ["anomalies", str(c.tmp / "s.csv")], 2, ("file not found",)),
    Row(
        "anomalies bad sensitivity",
        lambda c: ["anomalies", "x.csv", "--sensitivity", "extreme"],
        2,
        ("invalid choice", "medium"),
    ),
    Row(
        "anomalies bad direction",
        lambda c: ["anomalies", "x.csv", "--direction", "sideways"],
        2,
        ("invalid choice", "both"),
    ),
    Row("eval missing folder", lambda c: ["eval", str(c.tmp / "scen")], 2, ("scenario folder not found",)),
    # --- demo ---------------------------------------------------------------------------------
    Row("demo --hours -1", lambda c: ["demo", "--hours", "-1"], 2, ("--hours must be greater than 0",)),
    Row("demo --hours 0", lambda c: ["demo", "--hours", "0"], 2, ("--hours must be greater than 0",)),
    Row("demo --hours abc", lambda c: ["demo", "--hours", "abc"], 2, ("--hours must be a number",)),
    Row(
        "demo --hours too short",
        lambda c: ["demo", "--hours", "0.5", "--data-dir", str(c.tmp / "d")],
        2,
        ("too short", "--hours 1"),
    ),
    Row(
        "demo into a foreign dir",
        lambda c: ["demo", "--data-dir", str(c.data)],
        2,
        ("was not written by hciwatch demo", "choose another --data-dir"),
    ),
    # --- sql ----------------------------------------------------------------------------------
    Row("sql --timeout 0", lambda c: ["sql", "--timeout", "0", "select 1"], 2, ("--timeout must be greater than 0",)),
    Row("sql --timeout -5", lambda c: ["sql", "--timeout=-5", "select 1"], 2, ("--timeout must be greater than 0",)),
    Row("sql --limit 0", lambda c: ["sql", "--limit", "0", "select 1"], 2, ("--limit must be greater than 0",)),
    Row("sql missing data dir", lambda c: ["sql", "--data-dir", str(c.tmp / "x"), "select 1"], 2, ("does not exist",)),
    Row(
        "sql write statement",
        lambda c: ["sql", "--data-dir", str(c.data), "DROP VIEW samples"],
        2,
        ("query refused",),
    ),
    Row(
        "sql syntax error",
        lambda c: ["sql", "--data-dir", str(c.data), "SELEC 1"],
        2,
        ("query refused",),
    ),
    # --- report -------------------------------------------------------------------------------
    Row("report --from not a time", lambda c: ["report", "--from", "yesterday"], 2, ("not an ISO-8601 time",)),
    Row(
        "report --from after --to",
        lambda c: ["report", "--data-dir", str(c.data), "--from", "2026-11-17T00:00Z", "--to", "2026-11-16T00:00Z"],
        2,
        ("is not before --to",),
    ),
    Row("report missing data dir", lambda c: ["report", "--data-dir", str(c.tmp / "x")], 2, ("does not exist",)),
    Row("capture bad duration", lambda c: ["capture", "--config", "x", "--out", "y", "--duration", "long"], 2, ()),
    # --- check-config / run: one validation path ----------------------------------------------
    Row("check-config no file given", lambda c: ["check-config"], 2, ("needs a config file",)),
    Row("check-config missing file", lambda c: ["check-config", str(c.tmp / "no.toml")], 2, ("cannot read config",)),
    Row("check-config a directory", lambda c: ["check-config", "--config", str(c.tmp)], 2, ("is a directory",)),
    Row(
        "check-config TOML syntax error",
        lambda c: ["check-config", c.cfg("[api\nlisten = 1\n")],
        2,
        ("TOML syntax error", "line 1"),
    ),
    Row(
        "check-config TOML nested 5000 deep",
        lambda c: ["check-config", c.cfg(_nested(5000))],
        2,
        ("nested too deeply",),
    ),
    Row(
        "check-config non-UTF-8 config",
        lambda c: ["check-config", str(_write_bytes(c.tmp / "latin.toml", b"# caf\xe9\n"))],
        2,
        ("cannot read config",),
    ),
    Row(
        "check-config unknown top-level key",
        lambda c: ["check-config", c.cfg(c.ok_api() + "\n[apii]\n")],
        2,
        ("apii: unknown top-level key",),
    ),
    Row(
        "check-config listen :80800",
        lambda c: ["check-config", "--config", c.cfg(c.ok_api('listen = "127.0.0.1:80800"'))],
        2,
        ("api.listen", "80800", "out of range"),
    ),
    Row(
        "check-config listen nonsense",
        lambda c: ["check-config", c.cfg(c.ok_api('listen = "nonsense"'))],
        2,
        ("api.listen", "not host:port"),
    ),
    Row(
        "check-config missing token_file",
        lambda c: ["check-config", c.cfg(f'[api]\ntoken_file = "{c.tmp}/missing-token"\n')],
        2,
        ("api.token_file", "cannot read secret file", "No such file"),
    ),
    Row(
        "check-config no token and not unauthenticated",
        lambda c: ["check-config", c.cfg('data_dir = "d"\n')],
        2,
        ("api.token_file: required",),
    ),
    Row(
        "check-config non-UTF-8 token file",
        lambda c: [
            "check-config",
            c.cfg('[api]\ntoken_file = "' + str(_write_bytes(c.tmp / "tok", b"\xff\xfe hunter2")) + '"\n'),
        ],
        2,
        ("api.token_file", "cannot read secret file", "UnicodeDecodeError"),
        ("hunter2",),
    ),
    Row(
        "check-config empty token file",
        lambda c: ["check-config", c.cfg('[api]\ntoken_file = "' + str(_write_bytes(c.tmp / "tok0", b"  \n")) + '"\n')],
        2,
        ("is empty",),
    ),
    Row(
        "check-config token env unset",
        lambda c: ["check-config", c.cfg('[api]\ntoken_file = "env:HCIWATCH_TEST_UNSET_TOKEN"\n')],
        2,
        ("HCIWATCH_TEST_UNSET_TOKEN is not set",),
    ),
    Row(
        "check-config node pool overlaps VIP pool",
        lambda c: [
            "check-config",
            c.cfg(c.ok_api() + NET.replace('"10.40.0.59"', '"10.40.0.210"')),
        ],
        2,
        ("node pool overlaps", "VIP pool", "10.40.0.200-10.40.0.210"),
    ),
    Row(
        "check-config two networks' VIP pools overlap",
        lambda c: [
            "check-config",
            c.cfg(
                c.ok_api()
                + NET
                + NET.replace("vnet-a", "vnet-b")
                .replace("10.40.0.200", "10.40.0.230")
                .replace("10.40.0.231", "10.40.0.240")
                .replace("10.40.0.20", "10.40.1.20")
                .replace("10.40.0.59", "10.40.1.59")
            ),
        ],
        2,
        ("vnet-b VIP pool overlaps vnet-a VIP pool",),
    ),
    Row(
        "check-config webhook URL with a password",
        lambda c: [
            "check-config",
            c.cfg(c.ok_api() + '[[exporters]]\ntype = "webhook"\nurl = "ftp://user:SuperSecret42@example.com/x"\n'),
        ],
        2,
        ("url must start with http", "user:***@"),
        ("SuperSecret42",),
    ),
    Row(
        "check-config reports every problem at once",
        lambda c: [
            "check-config",
            c.cfg(
                f'[api]\nlisten = "0.0.0.0:99999"\ntoken_file = "{c.tmp}/gone"\n'
                + NET.replace('"10.40.0.20"', '"10.40.0.190"').replace('"10.40.0.59"', '"10.40.0.210"')
            ),
        ],
        2,
        ("3 problem(s)", "api.listen", "api.token_file", "node pool overlaps"),
    ),
    Row(
        "check-config haproxy password_file missing",
        lambda c: [
            "check-config",
            c.cfg(
                c.ok_api()
                + '[[sources]]\ntype = "haproxy"\ntargets = ["http://127.0.0.1:9/stats"]\nusername = "u"\n'
                + f'password_file = "{c.tmp}/nopass"\n'
            ),
        ],
        2,
        ("sources[0].password_file", "No such file"),
    ),
    Row(
        "check-config data_dir is a file",
        lambda c: ["check-config", c.cfg(f'data_dir = "{c.token}"\n' + c.ok_api())],
        2,
        ("data_dir", "is a file"),
    ),
    Row(
        "run listen nonsense (same path as check-config)",
        lambda c: ["run", "--config", c.cfg(c.ok_api('listen = "nonsense"'))],
        2,
        ("api.listen", "not host:port"),
    ),
    Row(
        "run listen :80800 (no OverflowError)",
        lambda c: ["run", "--config", c.cfg(c.ok_api('listen = ":80800"'))],
        2,
        ("out of range",),
    ),
    Row(
        "run with the port taken",
        lambda c: [
            "run",
            "--config",
            c.cfg(f'data_dir = "{c.tmp}/svc"\n' + c.ok_api(f'listen = "127.0.0.1:{c.port}"')),
        ],
        1,
        ("address already in use", "fix: stop the process using that port"),
    ),
    Row(
        "test-sources without sources",
        lambda c: ["test-sources", "--config", c.cfg(c.ok_api())],
        2,
        ("has no [[sources]]",),
    ),
    Row(
        "sql on a corrupt catalog.duckdb still answers",
        lambda c: ["sql", "--data-dir", str(_corrupt_catalog(c)), "SELECT count(*) AS n FROM samples"],
        0,
        ("cannot be read", "Delete it"),
    ),
]


def _write_bytes(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _corrupt_catalog(c: Ctx) -> Path:
    copy = c.tmp / "corrupt"
    shutil.copytree(c.data, copy)
    (copy / "catalog.duckdb").write_bytes(b"this is not a duckdb file" * 100)
    return copy


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.report.synth import write_site

    d = tmp_path_factory.mktemp("populated")
    write_site(d, hours=2, hosts=2, incidents=3)
    return d


@pytest.fixture
def ctx(tmp_path: Path, populated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HCIWATCH_TEST_UNSET_TOKEN", raising=False)
    token = tmp_path / "api-token"
    token.write_text("s3cret-token\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        yield Ctx(tmp=tmp_path, data=populated, token=token, port=held.getsockname()[1])


def test_table_has_at_least_40_rows() -> None:
    assert len(ROWS) >= 40
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_bad_input(row: Row, ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(row.argv(ctx))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == row.code, text
    assert "Traceback" not in text
    for needle in row.says:
        assert needle in text, text
    for secret in row.never:
        assert secret not in text, text


def test_debug_shows_the_traceback(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--debug", "run", "--config", ctx.cfg(ctx.ok_api(f'listen = "127.0.0.1:{ctx.port}"'))])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err and "address already in use" in err


def _read_only_mount(path: Path) -> str | None:
    """Make ``path`` a read-only tmpfs holding an (empty) store; returns why not when impossible."""
    why = mount_tmpfs(path, "1m")
    if why:
        return why
    (path / "samples").mkdir()
    why = remount_read_only(path)
    if why:
        umount(path)
    return why


def test_read_only_data_dir_is_refused_before_run() -> None:
    """A populated data dir the service cannot write: check-config and run say so (exit 2).

    As root (CI), permissions do not stop writes, so the dir is a read-only tmpfs (EROFS, which
    stops root too); elsewhere a chmod 0555 dir does it.
    """
    base = Path(tempfile.mkdtemp(prefix="hciwatch-ro-"))
    data = base / "data"
    data.mkdir()
    mounted = False
    try:
        if os.geteuid() == 0:
            why = _read_only_mount(data)
            assert why is None, f"no way to make a dir root cannot write: {why}"
            mounted = True
        else:
            (data / "samples").mkdir()
            data.chmod(0o555)
        token = base / "token"
        token.write_text("t\n")
        cfg = base / "c.toml"
        cfg.write_text(f'data_dir = "{data}"\n[api]\ntoken_file = "{token}"\n')
        cmd = [sys.executable, "-m", "hciwatch.cli", "check-config", "--config", str(cfg)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=base)
        assert proc.returncode == 2, proc.stderr
        assert "not writable" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        if mounted:
            umount(data)
        else:
            data.chmod(0o755)
        shutil.rmtree(base)
