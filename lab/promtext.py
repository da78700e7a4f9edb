"""Prometheus text exposition (0.0.4) exactly as a Go exporter writes it.

windows_exporter serves its metrics through client_golang, so a faithful payload needs Go's
habits: families sorted by name, each with ``# HELP`` and ``# TYPE``; series sorted by label
values, labels sorted by name; floats in ``strconv.FormatFloat(f, 'g', -1, 64)`` form, which
switches to exponent notation from 1e6 on (``2.26406781e+08``; checked against a Go exporter's
output). A body is compiled once into a ``%``-template with one slot per changing series, so a
scrape costs one float formatting per changing value and one C-level string substitution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


def go_float(x: float) -> str:
    """``strconv.FormatFloat(x, 'g', -1, 64)``: shortest round-trip digits, exponent at >= 1e6."""
    x = float(x)
    if 1e6 <= x < 1e16 and not x.is_integer():  # common: cumulative seconds; repr is positional here
        r = repr(x)
        dot = r.index(".")
        digits = (r[:dot] + r[dot + 1 :]).rstrip("0")
        return f"{digits[0]}.{digits[1:]}e+{dot - 1:02d}"
    if x.is_integer():
        if -1e6 < x < 1e6:
            return str(int(x))
        if abs(x) < 1e16:
            n = int(x)
            sign = "-" if n < 0 else ""
            s = str(abs(n))
            digits = s.rstrip("0")
            mant = digits[0] + "." + digits[1:] if len(digits) > 1 else digits
            return f"{sign}{mant}e+{len(s) - 1:02d}"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    if "e" in r:
        m, e = r.split("e")
        exp = int(e)
        digits = m.replace(".", "")
    else:
        ip, _, fp = r.partition(".")
        if ip != "0":
            digits, exp = ip + fp, len(ip) - 1
        else:
            stripped = fp.lstrip("0")
            digits, exp = stripped, -(len(fp) - len(stripped)) - 1
    digits = digits.rstrip("0") or "0"
    if exp < -4 or exp >= 6:
        mant = digits[0] + "." + digits[1:] if len(digits) > 1 else digits
        esign = "-" if exp < 0 else "+"
        return f"{sign}{mant}e{esign}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


@dataclass(slots=True)
class _Family:
    help: str
    type: str
    series: list[tuple[tuple[tuple[str, str], ...], int | None, float]] = field(default_factory=list)


class Exposition:
    """Collects families and series, then compiles them into a body template.

    ``add`` returns the column number of a changing series (``value=None``) or ``None`` for a
    constant one, whose text is baked into the template.
    """

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._columns = 0

    def add(self, name: str, help_text: str, mtype: str, labels: dict[str, str], value: float | None) -> int | None:
        fam = self._families.setdefault(name, _Family(help_text, mtype))
        col: int | None = None
        if value is None:
            col = self._columns
            self._columns += 1
        fam.series.append((tuple(sorted(labels.items())), col, 0.0 if value is None else value))
        return col

    @property
    def columns(self) -> int:
        return self._columns

    def compile(self) -> tuple[list[str], list[int]]:
        """The body as text segments around the value slots, and the column that fills each slot."""
        segments: list[str] = []
        order: list[int] = []
        buf: list[str] = []
        for name in sorted(self._families):
            fam = self._families[name]
            buf.append(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
            for labels, col, value in sorted(fam.series, key=lambda s: [v for _, v in s[0]]):
                line = name + label_text(dict(labels)) + " "
                if col is None:
                    buf.append(line + go_float(value) + "\n")
                else:
                    buf.append(line)
                    segments.append("".join(buf))
                    buf = ["\n"]
                    order.append(col)
        segments.append("".join(buf))
        return segments, order


# Slot classes: how one value is written with a single C-level ``%`` conversion taking a
# (precision, value) pair, so a whole scrape is one ``template % args`` call.
_SMALL_INT, _LARGE_INT, _REPR, _GO = 0, 1, 2, 3
_SPEC = {_SMALL_INT: "%.*d", _LARGE_INT: "%.*e", _REPR: "%.*r", _GO: "%.*s"}
_POW10 = np.array([10**k for k in range(1, 17)], dtype=np.int64)


TEMPLATES_KEPT = 8  # compiled body templates kept per formatter


class RowFormatter:
    """Renders rows of a value matrix into bodies, Go-formatted, without a Python call per value.

    Each value gets a class: integer below 1e6 (``%d``), integer from 1e6 (``%.<p>e`` with
    ``p`` = its significant digits - 1, which is exactly Go's exponent form), other finite value
    in [1e-4, 1e6) (``%r``: Python's shortest repr is positional there, like Go), or anything
    else (NaN, ±Inf, tiny or huge fractions), formatted by :func:`go_float`. A row's classes
    select a template compiled once and cached.
    """

    def __init__(self, segments: list[str]) -> None:
        self._segments = [seg.replace("%", "%%") for seg in segments]
        self._templates: dict[bytes, str] = {}

    def _template(self, classes: npt.NDArray[np.uint8]) -> str:
        key = classes.tobytes()
        tmpl = self._templates.get(key)
        if tmpl is None:
            parts = [self._segments[0]]
            for c, seg in zip(classes.tolist(), self._segments[1:], strict=True):
                parts.append(_SPEC[c])
                parts.append(seg)
            tmpl = "".join(parts)
            # A template is as long as a body, and a wide target rarely repeats its exact
            # pattern of value classes: a few are kept (oldest out), not one per scrape.
            if len(self._templates) >= TEMPLATES_KEPT:
                del self._templates[next(iter(self._templates))]
            self._templates[key] = tmpl
        return tmpl

    def render(self, matrix: npt.NDArray[np.float64]) -> list[str]:
        """One body per row of ``matrix`` (rows = scrapes, columns = slots in template order)."""
        rows, cols = matrix.shape
        if cols == 0:
            return [self._segments[0]] * rows
        x = matrix
        finite = np.isfinite(x)
        ax = np.abs(np.where(finite, x, 0.0))
        isint = finite & (x == np.floor(np.where(finite, x, 0.0))) & (ax < 1e15)
        classes = np.full(x.shape, _GO, dtype=np.uint8)
        classes[finite & ~isint & (ax >= 1e-4) & (ax < 1e6)] = _REPR
        small = isint & (ax < 1e6)
        large = isint & ~small
        classes[small] = _SMALL_INT
        classes[large] = _LARGE_INT
        prec = np.full(x.shape, 64, dtype=np.int64)
        prec[small] = 1
        if large.any():
            n = ax[large].astype(np.int64)
            digits = np.searchsorted(_POW10, n, side="right") + 1
            tz = np.zeros(n.shape, dtype=np.int64)
            for p in _POW10[:15]:
                tz += (n % p) == 0
            prec[large] = digits - tz - 1
        args = np.empty((rows, 2 * cols), dtype=object)
        args[:, 0::2] = prec
        vals = x.astype(object)
        go = classes == _GO
        if go.any():
            vals[go] = [go_float(v) for v in x[go].tolist()]
        args[:, 1::2] = vals
        out = []
        for i in range(rows):
            out.append(self._template(classes[i]) % tuple(args[i].tolist()))
        return out


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("%", "%%")
