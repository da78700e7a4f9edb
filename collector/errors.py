"""One exception tree for the whole product.

::

    HciwatchError
     ├── ConfigError            bad configuration (file, key path, value, what is allowed)
     ├── SourceError            anything a source did wrong
     │    ├── FetchError        the transport failed (timeout, refused, HTTP status, auth)
     │    └── ParseError        the payload could not be understood (where, why)
     ├── CaptureError           a capture record is malformed (file, line, why)
     ├── StoreError             the Parquet store or DuckDB catalog failed
     └── ExportError            a sink refused or failed a batch (retryable or not)

Callers catch at the level they care about; every error carries the facts a user needs to
find the problem without a debugger (what, where, why) as attributes as well as in the message.
"""

from __future__ import annotations


class HciwatchError(Exception):
    """Base of every error hciwatch raises on purpose."""


class ConfigError(HciwatchError):
    """A configuration file or value is invalid.

    Attributes:
        file: the config file, when known.
        key: dotted key path (``networks[0].vip_pool_start``).
        problems: one line per problem found (validation reports all of them at once).
    """

    def __init__(
        self, message: str, *, file: str | None = None, key: str | None = None, problems: list[str] | None = None
    ) -> None:
        self.file = file
        self.key = key
        self.problems = problems or [message]
        super().__init__(message)


class SourceError(HciwatchError):
    """A source could not deliver data.

    Attributes:
        source: the source kind (``windows``, ``haproxy``, ...).
        target: the target it was talking to (URL, socket path, topic).
    """

    def __init__(self, message: str, *, source: str = "", target: str = "") -> None:
        self.source = source
        self.target = target
        prefix = ":".join(p for p in (source, target) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.reason = message


class FetchError(SourceError):
    """The transport failed: timeout, connection refused, HTTP error status, bad credentials."""

    def __init__(self, message: str, *, source: str = "", target: str = "", retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message, source=source, target=target)


class ParseError(SourceError):
    """A payload could not be parsed.

    Attributes:
        line: 1-based line number in the payload, when the format is line-oriented.
        offset: byte offset in the payload, when known.
    """

    def __init__(
        self, message: str, *, source: str = "", target: str = "", line: int | None = None, offset: int | None = None
    ) -> None:
        self.line = line
        self.offset = offset
        where = []
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"offset {offset}")
        text = f"{message} (at {', '.join(where)})" if where else message
        super().__init__(text, source=source, target=target)


class CaptureError(HciwatchError):
    """A capture-file record is malformed.

    Attributes:
        file: the capture file.
        line: 1-based line number of the record.
        target: the record's target, when it could be read.
    """

    def __init__(self, message: str, *, file: str = "", line: int = 0, target: str = "") -> None:
        self.file = file
        self.line = line
        self.target = target
        self.reason = message
        loc = f"{file}:{line}" if file else f"line {line}"
        tgt = f" [{target}]" if target else ""
        super().__init__(f"{loc}{tgt}: {message}")


class StoreError(HciwatchError):
    """The Parquet store or the DuckDB catalog could not do what was asked."""


class ExportError(HciwatchError):
    """A sink failed to take a batch.

    Attributes:
        retryable: whether trying again later can succeed.
        retry_after: seconds the peer asked us to wait (HTTP Retry-After), when given.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)
