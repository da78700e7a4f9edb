"""One settings vocabulary for every source and sink: TLS, secrets, HTTP clients and retries.

Each concern has one module and one spelling in the configuration file:

* :mod:`.secrets` — ``*_file`` keys hold a file path or ``env:NAME``; read once at start-up;
* :mod:`.tls` — a ``tls`` table (``ca_file``, ``cert_file``, ``key_file``, ``insecure_skip_verify``,
  ``server_name``) that builds the :class:`ssl.SSLContext`;
* :mod:`.http` — timeout, body limit and basic/bearer authentication of an HTTP client;
* :mod:`.retry` — the one backoff policy (exponential, full jitter, honours ``Retry-After``);
* :mod:`.deprecated` — old key spellings, accepted for one release with a warning naming the new key.
"""

from collector.settings.deprecated import DeprecatedKeyWarning, Renamed, apply_renames
from collector.settings.http import HttpClientSettings, basic_auth
from collector.settings.retry import Backoff, RetrySettings, full_jitter, parse_retry_after
from collector.settings.secrets import Secret, SecretRef
from collector.settings.tls import TlsClientSettings

__all__ = [
    "Backoff",
    "DeprecatedKeyWarning",
    "HttpClientSettings",
    "Renamed",
    "RetrySettings",
    "Secret",
    "SecretRef",
    "TlsClientSettings",
    "apply_renames",
    "basic_auth",
    "full_jitter",
    "parse_retry_after",
]
