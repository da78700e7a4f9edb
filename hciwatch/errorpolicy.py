"""The CLI's one error policy: every exception becomes an exit code and a cause with its fix.

Exit codes follow the Unix convention the Prometheus/Telegraf tools use: **2** for usage and
configuration mistakes (the user must change the command or the file), **1** for failures at run
time (a port taken, a disk full, a damaged file), **130** for Ctrl-C. The message is one line
(``error: cause``) plus a ``fix:`` line when there is a known remedy; tracebacks appear only with
``--debug``, because a user's mistake is not a crash. Every line is redacted.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from collector.errors import ConfigError, HciwatchError
from hciwatch.redact import redact

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UsageError(HciwatchError):
    """The command line asks for something impossible (a missing file, a data dir that is not one).

    Attributes:
        fix: what to do instead, printed after the cause.
    """

    def __init__(self, message: str, *, fix: str = "") -> None:
        self.fix = fix
        super().__init__(message)


@dataclass
class Explained:
    """What the CLI prints and returns for one exception."""

    code: int
    cause: str
    fix: str = ""
    details: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"error: {redact(self.cause)}"]
        out += [f"  {redact(d)}" for d in self.details]
        if self.fix:
            out.append(f"fix: {redact(self.fix)}")
        return out


_OS_FIXES = {
    errno.EADDRINUSE: "stop the process using that port (ss -ltnp) or choose another api.listen",
    errno.EADDRNOTAVAIL: "use an address of this machine in api.listen (or 0.0.0.0 for all)",
    errno.EACCES: "fix the permissions for the user hciwatch runs as, or choose another path",
    errno.EPERM: "fix the permissions for the user hciwatch runs as, or choose another path",
    errno.EROFS: "the file system is read-only: choose a writable --data-dir / data_dir",
    errno.ENOSPC: "free disk space or lower store.retention_days",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a path component is a file, not a directory: check the path",
    errno.EISDIR: "give a file, not a directory",
}


def _os_error(exc: OSError) -> Explained:
    what = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    if exc.errno == errno.EADDRINUSE:
        return Explained(EXIT_RUNTIME, f"cannot listen: address already in use ({exc})", _OS_FIXES[errno.EADDRINUSE])
    return Explained(EXIT_RUNTIME, f"{what}{where}", _OS_FIXES.get(exc.errno or -1, ""))


def explain(exc: BaseException) -> Explained:
    """Map any exception raised by a command to its exit code and message."""
    import duckdb

    if isinstance(exc, ConfigError):
        details = [p for p in exc.problems if p != str(exc)]
        return Explained(EXIT_USAGE, str(exc), "correct the lines above (hciwatch check-config --config FILE)", details)
    if isinstance(exc, UsageError):
        return Explained(EXIT_USAGE, str(exc), exc.fix)
    if isinstance(exc, HciwatchError):
        return Explained(EXIT_RUNTIME, str(exc))
    if isinstance(exc, UnicodeDecodeError):
        return Explained(EXIT_USAGE, f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8")
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, duckdb.Error):
        return Explained(
            EXIT_RUNTIME,
            f"DuckDB: {str(exc).splitlines()[0]}",
            "if catalog.duckdb in the data dir is damaged, delete it (views only; the next run or replay "
            "rewrites it); check the data dir is an hciwatch data dir",
        )
    if isinstance(exc, RecursionError):
        return Explained(EXIT_USAGE, "input nested too deeply to process", "flatten the input")
    if isinstance(exc, MemoryError):
        return Explained(EXIT_RUNTIME, "out of memory", "narrow the query or time window")
    return Explained(
        EXIT_RUNTIME,
        f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        "rerun with --debug for the traceback and report it as a bug",
    )
