"""The shared settings vocabulary: secret references, the TLS table, retry delays, renamed keys."""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from collector.errors import ConfigError
from collector.settings import (
    Backoff,
    DeprecatedKeyWarning,
    HttpClientSettings,
    Renamed,
    RetrySettings,
    SecretRef,
    TlsClientSettings,
    apply_renames,
    basic_auth,
    full_jitter,
    parse_retry_after,
)
from collector.settings.deprecated import invert


class Holder(BaseModel):
    secret: SecretRef | None = None


def test_secret_refs_parse_resolve_and_never_show_the_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text("  pass word \r\n")
    ref = SecretRef.parse(str(f))
    secret = ref.resolve(key="sources.x.password_file")
    assert secret.get() == "  pass word "  # only line breaks are trimmed
    assert "pass word" not in repr(secret) and "pass word" not in str(secret) and str(f) in repr(secret)
    monkeypatch.setenv("HCIW_PW", "from-env")
    env = Holder.model_validate({"secret": "env:HCIW_PW"}).secret
    assert env == SecretRef(env="HCIW_PW") and env is not None and env.read(key="k") == "from-env"
    assert Holder(secret=f).model_dump(mode="json") == {"secret": str(f)}
    with pytest.raises(ValidationError, match="env:"):
        Holder.model_validate({"secret": "env:"})
    with pytest.raises(ValidationError, match="file path or env:NAME"):
        Holder.model_validate({"secret": 3})


@pytest.mark.parametrize(
    ("ref", "words"),
    [("env:HCIW_NOT_SET", "k.password_file: environment variable HCIW_NOT_SET is not set"), ("missing", "cannot read")],
)
def test_unresolvable_secrets_name_the_key(ref: str, words: str, tmp_path: Path) -> None:
    text = ref if ref.startswith("env:") else str(tmp_path / ref)
    with pytest.raises(ConfigError) as info:
        SecretRef.parse(text).resolve(key="k.password_file")
    assert words in str(info.value) and info.value.key == "k.password_file"


def test_empty_secret_is_an_error_and_rotation_keeps_the_last_good_value(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        SecretRef(path=f).resolve(key="k")
    f.write_text("one\n")
    secret = SecretRef(path=f).resolve(key="k")
    f.write_text("two\n")
    assert secret.current() == "two"
    f.unlink()  # mid-rotation: the last value stays in use
    assert secret.current() == "two" and secret.get() == "two"


def test_tls_table_builds_contexts_and_reports_bad_files(tmp_path: Path) -> None:
    assert TlsClientSettings().ssl_context().verify_mode.name == "CERT_REQUIRED"
    insecure = TlsClientSettings(insecure_skip_verify=True).ssl_context()
    assert not insecure.check_hostname and insecure.verify_mode.name == "CERT_NONE"
    with pytest.raises(ValidationError, match="go together"):
        TlsClientSettings(cert_file=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match=r"^exporters\.x\.tls\.ca_file: cannot load CA certificates"):
        TlsClientSettings(ca_file=tmp_path / "nope.pem").ssl_context(key="exporters.x.tls")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"tls\.cert_file: cannot load client certificate"):
        TlsClientSettings(cert_file=junk, key_file=junk).ssl_context()


def test_http_client_keys() -> None:
    assert basic_auth("u", "p") == "Basic dTpw"
    with pytest.raises(ValidationError, match="not both"):
        HttpClientSettings(bearer_token_file="/t", username="u", password_file="/p")
    with pytest.raises(ValidationError, match="password_file is not"):
        HttpClientSettings(username="u")
    assert HttpClientSettings(tls=True).tls == TlsClientSettings()
    assert HttpClientSettings().resolve_auth(key="k").header() is None


def test_backoff_is_full_jitter_growing_to_its_cap_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [full_jitter(a, 1.0, 8.0, rng) for a in range(12)]
    assert all(0 <= d <= min(8.0, 2.0**a) for a, d in enumerate(delays))
    assert max(delays[6:]) > 4.0  # reaches into the upper half once capped
    assert all(2.0 <= full_jitter(a, 1.0, 8.0, rng, floor=2.0) <= 8.0 for a in range(3, 10))
    now = 1_700_000_000.0
    b = Backoff(1.0, 60.0, rng=random.Random(1), clock=lambda: now)
    assert b.next_delay(retry_after=30) == 30 and b.next_delay(retry_after=10**6) == 3600
    assert b.attempt == 2
    b.reset()
    assert b.next_delay() <= 1.0
    when = format_datetime(datetime.fromtimestamp(now + 120, UTC), usegmt=True)
    assert b.delay_for_header(when) == pytest.approx(120)
    assert parse_retry_after("soon", now) is None
    assert RetrySettings(backoff_initial=2, backoff_max=4).backoff().maximum == 4
    with pytest.raises(ValidationError, match="backoff_max must be >= backoff_initial"):
        RetrySettings(backoff_initial=5, backoff_max=1)


class Renaming(BaseModel):
    tls: TlsClientSettings | None = None
    max_body_bytes: int = 0

    @model_validator(mode="before")
    @classmethod
    def _old(cls, data: Any) -> Any:
        renames = (Renamed("tls_verify", "tls.insecure_skip_verify", invert), Renamed("max_bytes", "max_body_bytes"))
        return apply_renames(data, renames, where="sources (x)")


def test_renamed_keys_move_with_a_warning_naming_the_new_key() -> None:
    with pytest.warns(DeprecatedKeyWarning) as caught:
        m = Renaming.model_validate({"tls_verify": False, "max_bytes": 5, "tls": True})
    assert m.tls == TlsClientSettings(insecure_skip_verify=True) and m.max_body_bytes == 5
    assert [str(w.message) for w in caught] == [
        "sources (x): key 'tls_verify' is deprecated, use 'tls.insecure_skip_verify'; "
        "the old spelling is accepted until the next release",
        "sources (x): key 'max_bytes' is deprecated, use 'max_body_bytes'; "
        "the old spelling is accepted until the next release",
    ]
    with pytest.raises(ValidationError, match=r"set max_body_bytes only"):
        Renaming.model_validate({"max_bytes": 5, "max_body_bytes": 6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Renaming.model_validate({"max_body_bytes": 6})  # the new spelling is silent
