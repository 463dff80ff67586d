"""The TLS trust every outbound HTTPS client of calbridge shares: the system's CAs, certifi's (what
httpx trusts by default) and CALBRIDGE_CA_BUNDLE.

One SSL context per bundle file and process: building one parses every CA file (tens of
milliseconds of CPU), and a context is made to be shared by many connections. A rewritten bundle
file is read again."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

import certifi


def ssl_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """The shared context trusting the system's, certifi's and `ca_bundle`'s CAs."""
    if ca_bundle is None:
        return _context(None, None)
    stat = ca_bundle.stat()
    return _context(ca_bundle, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _context(ca_bundle: Path | None, _version: tuple[int, int] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context
