"""The state a watch keeps for one (cluster, resource): the current objects by namespace/name.

Pure bookkeeping, no I/O: :meth:`WatchState.reset` starts from a complete list, :meth:`WatchState.apply`
folds in one watch event (410 raises :class:`Gone`, another ERROR :class:`WatchFailed`), and
:meth:`WatchState.snapshot` renders the same List document a pull would have produced.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


class Gone(Exception):
    """HTTP 410: the resourceVersion or continue token is too old; list again."""


class WatchFailed(Exception):
    """The watch stream reported an ERROR event other than 410."""


@dataclass(slots=True)
class ListResult:
    """A complete list of one resource: the body to record and what it was read at."""

    body: bytes
    resource_version: str
    items: list[Any]
    api_version: str
    kind: str
    pages: int


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def status_message(data: bytes) -> str:
    """The ``message`` of a Kubernetes Status body, else a short excerpt of the body."""
    obj = json_object(data)
    if obj is not None and isinstance(obj.get("message"), str):
        reason = obj.get("reason")
        text = f"{reason}: {obj['message']}" if isinstance(reason, str) and reason else obj["message"]
    else:
        text = data[:200].decode("utf-8", "replace").strip() or "(empty body)"
    return text[:300]


def object_key(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if isinstance(ns, str) and ns else str(meta["name"])


class WatchState:
    """The current objects of one (cluster, resource), kept up to date by watch events."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.resource_version = ""
        self.api_version = "v1"
        self.kind = "List"
        self.server = ""
        self.control_plane: str | None = None
        self.changed = asyncio.Event()

    def reset(self, listed: ListResult) -> None:
        self.objects = {}
        for obj in listed.items:
            key = object_key(obj)
            if key is not None:
                self.objects[key] = obj
        self.resource_version = listed.resource_version
        self.api_version, self.kind = listed.api_version, listed.kind
        self.changed.set()

    def apply(self, event: Any) -> bool:
        """Apply one watch event; ``True`` when the object set changed. 410 raises Gone."""
        if not isinstance(event, dict):
            return False
        etype, obj = event.get("type"), event.get("object")
        if etype == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == 410:
                raise Gone(status_message(dump(obj)))
            raise WatchFailed(status_message(dump(obj)))
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
            self.resource_version = meta["resourceVersion"]
        if etype == "BOOKMARK":
            return False
        key = object_key(obj)
        if key is None:
            return False
        if etype in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
        elif etype == "DELETED":
            self.objects.pop(key, None)
        else:
            return False
        return True

    def snapshot(self) -> bytes:
        items = [self.objects[k] for k in sorted(self.objects)]
        return dump(
            {
                "apiVersion": self.api_version,
                "kind": self.kind,
                "metadata": {"resourceVersion": self.resource_version},
                "items": items,
            }
        )
