"""The Prometheus text parser: semantics, catalog mapping, Windows normalization, NIC IPs, errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collector.catalog import DEFAULT_CATALOG, Catalog, UserMapping
from collector.errors import ParseError
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, ParseResult, RawRecord
from collector.sources.prometheus._scan import LineError, check_comment, parse_line
from collector.sources.prometheus.parse import MAX_LINE_ERRORS, parse_record

TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def parse(body: bytes | str, catalog: Catalog = DEFAULT_CATALOG, **labels: str) -> ParseResult:
    data = body.encode() if isinstance(body, str) else body
    return parse_record(
        RawRecord(ts=TS, kind="prometheus", target="n1:9182", host="n1", body=data, labels=labels), catalog
    )


def rows(result: ParseResult) -> list[dict[str, Any]]:
    return [{**r, "labels": dict(r["labels"])} for r in result.samples.to_pylist()]


def bare_catalog() -> Catalog:
    """A catalog that maps nothing, so outputs are the payload's own names and labels."""
    c = Catalog()
    c.prometheus = {}
    return c


def _key(v: float) -> object:
    return "nan" if math.isnan(v) else v


def oracle(body: bytes) -> tuple[list[tuple[Any, ...]], set[int]]:
    """Line-by-line reference parse with the exact path only: (samples, bad line numbers)."""
    out: list[tuple[Any, ...]] = []
    bad: set[int] = set()
    for i, raw in enumerate(body.split(b"\n")):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        text = line.decode("utf-8")
        if not text.strip(" \t"):
            continue
        try:
            if text.startswith("#"):
                check_comment(text)
                continue
            name, labels, value, ts = parse_line(text)
        except LineError:
            bad.add(i + 1)
            continue
        out.append((name, tuple(sorted(labels)), _key(value), ts))
    return sorted(out, key=repr), bad


def ours(body: bytes) -> tuple[list[tuple[Any, ...]], set[int]]:
    try:
        result = parse(body, bare_catalog())
    except ParseError as exc:
        assert "internal parser failure" not in str(exc)
        return [], {exc.line} if exc.line else set()
    default_ms = int(TS.timestamp() * 1000)
    got = []
    for r in result.samples.to_pylist():
        ms = int(r["ts"].timestamp() * 1000)
        got.append((r["metric"], tuple(sorted(r["labels"])), _key(r["value"]), None if ms == default_ms else ms))
    return sorted(got, key=repr), {e.line for e in result.errors if isinstance(e, ParseError) and e.line}


def test_matches_prometheus_client_on_windows_payload() -> None:
    from bench.bench_prom_parse import generate_payload

    body = generate_payload(9_000)
    result = parse(body, bare_catalog())
    assert result.errors == []
    mine = sorted((r["metric"], tuple(sorted(r["labels"])), _key(r["value"])) for r in rows_raw(result))
    names = {m[0] for m in mine}
    theirs = sorted(
        (
            (s.name if s.name in names or not s.name.endswith("_total") else s.name[:-6]),
            tuple(sorted(s.labels.items())),
            _key(s.value),
        )
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    )
    assert mine == theirs


def rows_raw(result: ParseResult) -> list[dict[str, Any]]:
    return list(result.samples.to_pylist())


_label_value = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_name = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: not s.endswith(("_total", "_count", "_sum", "_bucket", "_created", "_info", "_gcount", "_gsum"))
)
_sample = st.tuples(
    _name,
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), _label_value, max_size=4),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _render(samples: list[tuple[str, dict[str, str], float]]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    def num(v: float) -> str:
        return "NaN" if math.isnan(v) else ("+Inf" if v == math.inf else "-Inf" if v == -math.inf else repr(v))

    out = []
    for name, labels, value in samples:
        body = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
        out.append(f"{name}{{{body}}} {num(value)}" if labels else f"{name} {num(value)}")
    return "\n".join(out) + "\n"


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.lists(_sample, min_size=1, max_size=20))
def test_matches_prometheus_client_on_random_expositions(samples: list[tuple[str, dict[str, str], float]]) -> None:
    text = _render(samples)
    mine = sorted(
        ((r["metric"], tuple(sorted(r["labels"])), _key(r["value"])) for r in rows_raw(parse(text, bare_catalog()))),
        key=repr,
    )
    theirs = sorted(
        (
            (s.name, tuple(sorted(s.labels.items())), _key(s.value))
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        ),
        key=repr,
    )
    assert mine == theirs


@pytest.mark.timeout(3600)  # the "fuzz" profile runs 10k examples
@given(st.lists(_sample, min_size=1, max_size=20), st.data())
def test_vectorized_path_equals_exact_path(
    samples: list[tuple[str, dict[str, str], float]], data: st.DataObject
) -> None:
    """Mutate a valid payload byte-wise; the fast path must agree with the line-by-line parser."""
    body = bytearray(_render(samples).encode())
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(body)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from([*list(b'"{}\\=, \t\n\r#x0'), 195]))
        if op == "insert":
            body.insert(at, ch)
        elif at < len(body):
            if op == "delete":
                del body[at]
            else:
                body[at] = ch
    raw = bytes(body)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    if b"\x00" in raw:
        return
    expected, bad = oracle(raw)
    got, got_bad = ours(raw)
    if expected or not bad:
        assert got == expected
        assert got_bad == bad
    else:  # nothing valid and something bad: the whole payload is rejected, naming a bad line
        assert got == [] and got_bad <= bad


def test_source_column_by_prefix_and_override() -> None:
    body = "windows_x 1\nkubeproxy_x 1\nfelix_x 1\nipam_x 1\nmetallb_x 1\nhaproxy_x 1\ngo_goroutines 1\n"
    got = {r["metric"]: r["source"] for r in rows(parse(body))}
    assert got == {
        "windows_x": "windows",
        "kubeproxy_x": "kube-proxy",
        "felix_x": "calico",
        "ipam_x": "calico",
        "metallb_x": "metallb",
        "haproxy_x": "haproxy",
        "go_goroutines": "prometheus",
    }
    assert {r["source"] for r in rows(parse(body, source="windows"))} == {"windows"}


def test_record_labels_added_and_conflicts_renamed() -> None:
    result = parse('up{cluster="inner",job="j"} 1\nup 2\n', cluster="hci-1", network="n1", source="x")
    got = [r["labels"] for r in rows(result)]
    assert got == [
        {"exported_cluster": "inner", "job": "j", "cluster": "hci-1", "network": "n1"},
        {"cluster": "hci-1", "network": "n1"},
    ]
    assert all(r["host"] == "n1" for r in rows(result))


def test_catalog_mapping_and_windows_normalization() -> None:
    body = (
        'windows_net_bytes_received_total{nic="Mellanox ConnectX-6 Dx Adapter"} 10\n'
        'windows_performancecounter_rdma_activity_rdma_inbound_bytes_sec{instance="Mlx _2"} 5\n'
        'windows_performancecounter_mellanox_winof_2_port_qos_rcv_pause_frames{instance="Mlx Prio 3"} 7\n'
        'windows_performancecounter_mellanox_winof_2_port_qos_rcv_pause_frames{instance="Mlx_Priority_5",x="y"} 8\n'
        'windows_smbclient_requests_total{server="s",share="ClusterStorage$"} 9\n'
        'windows_unmapped_thing{instance="keep"} 1\n'
        'felix_int_dataplane_failures{instance="keep"} 2\n'
    )
    got = [(r["metric"], r["labels"]) for r in rows(parse(body))]
    assert got == [
        ("net.bytes_received_total", {"nic": "Mellanox ConnectX-6 Dx Adapter"}),
        ("rdma.inbound_bytes_total", {"nic": "Mlx _2"}),
        ("pfc.rx_pause_frames_total", {"nic": "Mlx", "priority": "3"}),
        ("pfc.rx_pause_frames_total", {"x": "y", "nic": "Mlx", "priority": "5"}),
        ("smb.client.requests_total", {"server": "s", "share": "ClusterStorage$"}),
        ("windows_unmapped_thing", {"instance": "keep"}),
        ("calico.felix.dataplane_failures_total", {"instance": "keep"}),
    ]


def test_user_mapping_with_renamed_instance_label() -> None:
    cat = Catalog([UserMapping("hci_pfc_rx_pause_frames_total", "pfc.rx_pause_frames_total", "1", True)])
    # a user mapping of a non-windows_ name is not Windows-normalized: labels stay as exported
    got = rows(parse('hci_pfc_rx_pause_frames_total{port_prio="Mlx Prio 3"} 4\n', cat))
    assert got[0]["metric"] == "pfc.rx_pause_frames_total"
    assert got[0]["labels"] == {"port_prio": "Mlx Prio 3"}


def test_nic_ip_observations() -> None:
    body = (
        'windows_net_nic_info{friendly_name="vSMB",mac="0C-42-A1-5D-10-01",nic="Mlx"} 1\n'
        'windows_net_nic_info{friendly_name="bad",mac="not-a-mac",nic="Other"} 1\n'
        'windows_net_nic_address_info{address="10.0.0.5",family="ipv4",friendly_name="vSMB",nic="Mlx"} 1\n'
        'windows_net_nic_address_info{address="fe80::1",family="ipv6",friendly_name="vSMB",nic="Mlx"} 1\n'
        'windows_net_nic_address_info{address="127.0.0.1",family="ipv4",friendly_name="lo",nic="Lo"} 1\n'
        'windows_net_nic_address_info{address="::1",family="ipv6",friendly_name="lo",nic="Lo"} 1\n'
        'windows_net_nic_address_info{address="2001:db8::5",family="ipv6",friendly_name="x",nic="Other"} 1\n'
        'windows_net_nic_address_info{address="garbage",family="ipv4",friendly_name="x",nic="Other"} 1\n'
    )
    result = parse(body, cluster="c1", network="vnet")
    assert result.ip_observations.schema == IP_OBSERVATIONS_SCHEMA
    got = [
        (r["ip"], r["mac"], r["owner"], r["owner_kind"], r["cluster"], r["network"], r["source"])
        for r in result.ip_observations.to_pylist()
    ]
    assert got == [
        ("10.0.0.5", "0c:42:a1:5d:10:01", "n1/Mlx", "nic", "c1", "vnet", "windows"),
        ("2001:db8::5", None, "n1/Other", "nic", "c1", "vnet", "windows"),
    ]
    assert result.samples.num_rows == 8  # the info series are samples too


def test_values_and_timestamps() -> None:
    body = 'a{k="1"} NaN\na{k="2"} +Inf\na{k="3"} -Inf\na{k="4"} 1e-3 1700000000123\nb 5 -1\nc 0x1p-2\n'
    r = rows(parse(body))
    assert math.isnan(r[0]["value"])
    assert [x["value"] for x in r[1:]] == [math.inf, -math.inf, 0.001, 5.0, 0.25]
    assert r[3]["ts"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert r[4]["ts"] == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert r[0]["ts"] == TS


def test_timestamps_outside_datetime_range_are_bad_lines() -> None:
    result = parse('a{k="1"} 1 253402300800000\nb 2 -62135596800001\nc{k="3"} 3 253402300799999\n')
    assert [r["metric"] for r in rows(result)] == ["c"]
    assert [e.line for e in result.errors if isinstance(e, ParseError)] == [1, 2]


def test_empty_and_comment_only_bodies() -> None:
    for body in (b"", b"\n\n", b"# HELP x y\n# TYPE x gauge\n", b"   \n\t\n"):
        result = parse(body)
        assert result.samples.num_rows == 0 and result.errors == []
        assert result.samples.schema == SAMPLES_SCHEMA


def test_not_text_is_rejected() -> None:
    with pytest.raises(ParseError, match="NUL") as err:
        parse(b"up 1\n\x00\x01\x02")
    assert err.value.offset == 5
    with pytest.raises(ParseError, match="gzip"):
        import gzip

        parse(gzip.compress(b"up 1\n"))
    with pytest.raises(ParseError, match="NUL"):  # unmarked UTF-16 text is full of NUL bytes
        parse('up{a="é"} 1\n'.encode("utf-16-le"))
    # with its byte-order mark (Windows PowerShell's Out-File) it is text and is read
    assert parse('up{a="é"} 1\n'.encode("utf-16")).samples.num_rows == 1
    with pytest.raises(ParseError, match="not UTF-8"):
        parse('r\xe9seau{a="\xe9"} 1\n\xe9t\xe9 2\n'.encode("latin-1"))


def test_undecodable_line_is_skipped_and_reported() -> None:
    body = b'up{a="ok"} 1\nup{a="caf\xe9"} 2\nup{a="ok2"} 3\n'
    result = parse(body)
    assert [r["labels"]["a"] for r in rows(result)] == ["ok", "ok2"]
    (err,) = result.errors
    assert isinstance(err, ParseError) and err.line == 2 and "UTF-8" in str(err)


def test_nothing_parses_raises_with_first_line() -> None:
    with pytest.raises(ParseError) as err:
        parse("<html>\n<body>Service Unavailable</body>\n</html>\n")
    assert err.value.line == 1
    assert err.value.target == "n1:9182"


def test_error_cap() -> None:
    body = "up 1\n" + "bad line here\n" * (MAX_LINE_ERRORS + 150)
    result = parse(body)
    assert result.samples.num_rows == 1
    assert len(result.errors) == MAX_LINE_ERRORS + 1
    assert "150 more bad lines" in str(result.errors[-1])
    assert [e.line for e in result.errors[:3] if isinstance(e, ParseError)] == [2, 3, 4]


def test_fast_and_exact_paths_agree_on_whitespace_variants() -> None:
    a = rows(parse('m{a="1",b="x y"} 3\n', bare_catalog()))
    b = rows(parse('  m { a = "1" ,b="x y", }\t3  \n', bare_catalog()))
    assert [(r["metric"], r["labels"], r["value"]) for r in a] == [(r["metric"], r["labels"], r["value"]) for r in b]


def test_histogram_and_summary_series_kept() -> None:
    body = (
        '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.7\nh_count 2\n'
        '# TYPE s summary\ns{quantile="0.99"} NaN\ns_sum 1\ns_count 0\n'
    )
    got = [(r["metric"], r["labels"]) for r in rows(parse(body, bare_catalog()))]
    assert ("h_bucket", {"le": "+Inf"}) in got and ("s", {"quantile": "0.99"}) in got
    assert len(got) == 7


def test_internal_failures_surface_as_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.sources.prometheus.parse as mod

    def boom(body: bytes) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(mod, "scan", boom)
    with pytest.raises(ParseError, match="internal parser failure"):
        parse("up 1\n")
