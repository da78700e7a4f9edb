"""Silence routes: behind the token, validated, persisted in the data dir."""

from __future__ import annotations

from pathlib import Path

from hciwatch.silences import SilenceStore
from tests.api.conftest import ClientFactory
from tests.api.helpers import auth


async def test_api_routes_behind_the_token(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client(silences=SilenceStore(data_dir))
    body = {"matchers": "kind=duplicate_ip,ip=10.0.0.*", "for": "2h", "comment": "planned re-IP"}
    assert (await client.post("/api/v1/silences", json=body)).status == 401
    assert (await client.get("/api/v1/silences")).status == 401
    resp = await client.post("/api/v1/silences", json=body, headers=auth())
    assert resp.status == 201
    created = await resp.json()
    resp = await client.get("/api/v1/silences", headers=auth())
    assert [s["id"] for s in (await resp.json())["silences"]] == [created["id"]]
    bad = await client.post("/api/v1/silences", json={**body, "for": "later"}, headers=auth())
    assert bad.status == 400
    bad = await client.post("/api/v1/silences", json={**body, "extra": 1}, headers=auth())
    assert bad.status == 400 and "extra" in (await bad.json())["error"]
    resp = await client.delete(f"/api/v1/silences/{created['id']}", headers=auth())
    assert resp.status == 200 and (await resp.json())["expired_at"]
    assert (await client.delete("/api/v1/silences/nope", headers=auth())).status == 404
