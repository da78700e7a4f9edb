"""HTML for the operator views: the self-contained report file and the service's live page.

Both inline everything (uPlot, the app's JS and CSS; the report also its model), because edge
sites have no internet and a report is mailed around as one file. A Content-Security-Policy
names each inline script by its SHA-256 and allows no network access at all for the report
(``connect-src 'none'``) and only its own origin for the live page, so the browser itself
enforces "no external request" rather than a promise in a comment.

Assets live in ``hciwatch/web/`` (package data) and are read through :mod:`importlib.resources`,
so this works from a wheel as well as from a checkout.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


@cache
def asset(name: str) -> str:
    """The text of ``hciwatch/web/<name>``."""
    return files("hciwatch").joinpath("web", *name.split("/")).read_text(encoding="utf-8")


def _script_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts: Sequence[str], *, connect: str) -> str:
    """A CSP allowing exactly these inline scripts, inline styles, data: images, and ``connect``."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src " + " ".join(_script_hash(s) for s in scripts),
            "style-src 'unsafe-inline'",  # uPlot sizes its elements with style attributes
            "img-src data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _fill(template: str, values: Mapping[str, str]) -> str:
    """One pass over the template, so text inserted for one placeholder is never re-scanned."""
    for name, text in values.items():
        if name.endswith("_JS") and "</script" in text.lower():
            raise ValueError(f"{name} contains '</script' and cannot be inlined")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def model_json(model: Mapping[str, Any]) -> str:
    """The model as JSON that is safe inside a ``<script type="application/json">`` block."""
    text = json.dumps(model, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title(model: Mapping[str, Any]) -> str:
    win = model.get("window") or {}

    def fmt(s: float | None) -> str:
        return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d %H:%M") if s is not None else "?"

    who = model.get("site") or model.get("data_dir") or "site"
    return f"hciwatch report — {who} — {fmt(win.get('from'))} to {fmt(win.get('to'))} UTC"


def render_report(model: Mapping[str, Any]) -> str:
    """The self-contained report page for ``model`` (see :mod:`hciwatch.report.model`)."""
    uplot_js, app_js = asset("vendor/uPlot.iife.min.js"), asset("app.js")
    return _fill(
        asset("report.html"),
        {
            "CSP": content_security_policy([uplot_js, app_js], connect="'none'"),
            "TITLE": html.escape(_title(model)),
            "UPLOT_CSS": asset("vendor/uPlot.min.css"),
            "APP_CSS": asset("app.css"),
            "MODEL": model_json(model),
            "UPLOT_JS": uplot_js,
            "APP_JS": app_js,
        },
    )


@lru_cache(maxsize=1)
def live_page() -> tuple[str, str]:
    """The live page's HTML and the Content-Security-Policy header to serve it with."""
    scripts = [asset("vendor/uPlot.iife.min.js"), asset("app.js"), asset("live.js")]
    page = _fill(
        asset("live.html"),
        {
            "UPLOT_CSS": asset("vendor/uPlot.min.css"),
            "APP_CSS": asset("app.css"),
            "UPLOT_JS": scripts[0],
            "APP_JS": scripts[1],
            "LIVE_JS": scripts[2],
        },
    )
    csp = content_security_policy(scripts, connect="'self'") + "; frame-ancestors 'none'"
    return page, csp
