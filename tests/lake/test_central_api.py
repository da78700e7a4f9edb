"""``hciwatch serve-fleet``: the central query API over a real lake (local disk and Azurite).

The server runs as its own process (``python -m hciwatch serve-fleet``), exactly as the central
Deployment in ``deploy/kubernetes/fleet`` runs it, and is queried over HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.lake import Lake, LakeSettings
from tests.fixtures.loopback import free_port
from tests.fixtures.object_stores import ObjectStore
from tests.lake.fleet_synth import DUP_IP, site_name, write_fleet

REPO = Path(__file__).resolve().parents[2]
TOKEN = "central-test-token-0123456789"
SITES = 3


def _request(port: int, path: str, *, body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _query(port: int, sql: str, token: str | None = TOKEN) -> tuple[int, dict]:  # type: ignore[type-arg]
    return _request(port, "/api/v1/query", body=json.dumps({"sql": sql}).encode(), token=token)


@pytest.fixture(params=["local", "azurite"])
def central(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A fleet lake of three sites and a serve-fleet process over it; yields its port."""
    lake_cfg: dict[str, str]
    if request.param == "local":
        url = str(tmp_path / "lake")
        lake_cfg = {}
    else:
        request.applymarker(pytest.mark.integration)
        server: ObjectStore = request.getfixturevalue("azurite")
        url = server.url(server.new_bucket())
        lake_cfg = server.lake_settings()
    write_fleet(
        Lake.open(url, LakeSettings.model_validate({"url": url, **lake_cfg})), SITES, tmp_path / "w", minutes=20
    )
    port = free_port()
    cfg = tmp_path / "central.toml"
    lines = ["[api]", f'listen = "127.0.0.1:{port}"', 'token_file = "env:FLEET_TOKEN"', "[store.lake]"]
    lines += [f'{k} = "{v}"' for k, v in lake_cfg.items()]
    cfg.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "FLEET_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    log = tmp_path / "central.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hciwatch", "serve-fleet", "--config", str(cfg), "--lake", url],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _request(port, "/readyz", token=None)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_central_queries_answer_for_every_site(central: int) -> None:
    status, doc = _query(central, "SELECT site, count(*) AS n FROM samples GROUP BY site ORDER BY site")
    assert status == 200, doc
    assert [r[0] for r in doc["rows"]] == [site_name(i) for i in range(SITES)]
    status, doc = _query(central, "SELECT DISTINCT site, ip FROM ip_conflicts ORDER BY site")
    assert status == 200, doc
    assert doc["rows"] == [[site_name(i), DUP_IP] for i in range(SITES)]
    status, doc = _query(central, "SELECT count(DISTINCT site) FROM counter_rates")
    assert (status, doc["rows"]) == (200, [[SITES]])


def test_central_api_needs_the_token_and_keeps_the_sandbox(central: int) -> None:
    assert _query(central, "SELECT 1", token=None)[0] == 401
    assert _query(central, "SELECT 1", token="wrong")[0] == 401
    status, doc = _query(central, "SELECT * FROM read_parquet('/etc/hostname')")
    assert status in (400, 422) and "hostname" not in json.dumps(doc.get("rows", []))
    assert _query(central, "COPY (SELECT 1) TO '/tmp/central-x.csv'")[0] in (400, 422)
    # a central reader has no site of its own: alerts, feed and operator views are each site's
    assert _request(central, "/api/v1/alerts")[0] == 404
    assert _request(central, "/healthz", token=None)[0] == 200


def test_serve_fleet_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    cfg = tmp_path / "open.toml"
    cfg.write_text(f'[api]\nallow_unauthenticated = true\n[store.lake]\nurl = "{tmp_path}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hciwatch", "serve-fleet", "--config", str(cfg)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "api.token_file" in proc.stderr + proc.stdout
