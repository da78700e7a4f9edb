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


def go_float(x: float) -> str:
    """``strconv.FormatFloat(x, 'g', -1, 64)``: shortest round-trip digits, exponent at >= 1e6."""
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
    return f"{sign}{digits[:exp + 1]}.{digits[exp + 1:]}"


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

    def compile(self) -> tuple[str, list[int]]:
        """The ``%``-template and, per slot in template order, the column that fills it."""
        parts: list[str] = []
        order: list[int] = []
        for name in sorted(self._families):
            fam = self._families[name]
            parts.append(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
            for labels, col, value in sorted(fam.series, key=lambda s: [v for _, v in s[0]]):
                line = name + label_text(dict(labels)).replace("%", "%%") + " "
                if col is None:
                    parts.append(line + go_float(value) + "\n")
                else:
                    parts.append(line + "%s\n")
                    order.append(col)
        return "".join(parts), order


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("%", "%%")
