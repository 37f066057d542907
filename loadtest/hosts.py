"""Where load may be sent: loopback (127.0.0.0/8, ::1, localhost) unless a host is named explicitly.

A load generator pointed at the wrong address is a denial-of-service tool; every target URL (inference
and metrics) is checked before anything is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


class HostNotAllowed(ValueError):
    pass


def host_of(url: str) -> str:
    """``host:port``, ``http://host:port/path`` or ``[::1]:port`` -> the host."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    if not parts.hostname:
        raise HostNotAllowed(f"no host in {url!r}")
    return parts.hostname


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(url: str, allowed: Iterable[str] = ()) -> str:
    """Return ``url`` when its host is loopback or listed in ``allowed``; raise ``HostNotAllowed``."""
    host = host_of(url)
    if is_loopback(host) or host.lower() in {h.lower().strip("[]") for h in allowed}:
        return url
    raise HostNotAllowed(
        f"refusing to send load to {host!r} ({url}): only loopback hosts (127.0.0.0/8, ::1, localhost) "
        f"unless named with --allow-host {host}"
    )
