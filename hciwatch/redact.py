"""Remove secrets from any text a user may see (config problems, error lines, logs).

Secrets never live in a config file in clear, but users paste them anyway (a webhook URL with a
SAS signature, ``ftp://user:password@host``) and validation messages quote the offending value.
Every message the CLI prints goes through :func:`redact` so the README's promise — secrets never
appear in messages — holds even for values that were rejected.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host → scheme://user:***@host (the user name stays: it helps find the entry)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@'\"]*):(?P<pw>[^/\s@'\"]+)@")
# query parameters and key=value pairs that carry credentials (SAS sig, tokens, passwords, keys)
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>\b(?:sig|signature|token|access_token|api[_-]?key|apikey|password|passwd|pwd|secret|"
    r"client_secret|code|instrumentationkey|sharedaccesskey|accountkey)=)(?P<val>[^&\s;'\"]+)"
)
_BEARER = re.compile(r"(?i)(?P<key>\bbearer\s+)(?P<val>[A-Za-z0-9._~+/\-]+=*)")


def redact(text: str) -> str:
    """``text`` with URL passwords, credential parameters and bearer tokens replaced by ``***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['key']}{MASK}", text)
