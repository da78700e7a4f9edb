"""The HAProxy fixture itself: it fails (never skips) with the install hint when HAProxy is absent."""

from __future__ import annotations

import pytest

from tests.fixtures import haproxy as fixture


def test_missing_haproxy_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HCIWATCH_HAPROXY", raising=False)
    monkeypatch.setattr("tests.fixtures.haproxy.shutil.which", lambda name: None)
    monkeypatch.setattr("tests.fixtures.haproxy.os.access", lambda path, mode: False)
    with pytest.raises(pytest.fail.Exception, match="`make test` installs it"):
        fixture.haproxy_binary()


def test_override_must_be_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCIWATCH_HAPROXY", "/nonexistent/haproxy")
    with pytest.raises(pytest.fail.Exception, match="HCIWATCH_HAPROXY=/nonexistent/haproxy"):
        fixture.haproxy_binary()


def test_installed_haproxy_is_found() -> None:
    assert fixture.haproxy_binary().endswith("haproxy")
