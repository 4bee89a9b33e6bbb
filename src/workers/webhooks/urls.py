"""Where a webhook may point: http(s) to a public address (SSRF: never into our own network).

Checked when the endpoint is registered and again at each delivery, after resolving the name, so a
name that later resolves to an internal address is refused then too. A name can answer the check
with a public address and the connection a moment later with an internal one (DNS rebinding), so the
delivery's session checks the address it actually connected to as well, before sending a byte
(`session`). `ORDERSTREAM_WEBHOOKS_ALLOW_PRIVATE=1` (development, tests) allows loopback and private
addresses, but never link-local ones (cloud metadata services) nor multicast. Proxies from the
environment are not used: the address checked is the receiver's.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedUrl(ValueError):
    """A webhook URL that may not be called (its scheme, or where it resolves)."""


class Unresolved(RefusedUrl):
    """A name that did not resolve: refused at registration, retried at delivery (DNS may be back)."""


# IPv6 ranges that carry an IPv4 address (NAT64 reaches it; 6to4 and Teredo wrap it), and those that
# are internal without `ipaddress` saying so (IPv4-compatible, deprecated site-local).
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class Target:
    """A URL checked, and the address to connect to."""

    url: str
    host: str
    port: int
    address: str


def check_form(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL without credentials, or RefusedUrl."""
    try:
        parts = urlsplit(url)
        if parts.hostname:
            parts.hostname.encode("idna")  # a label of 64 characters or more, or an empty one ("a..b"), is no name
    except (ValueError, UnicodeError) as exc:
        raise RefusedUrl(f"not a URL we can call ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("a webhook URL is http:// or https://")
    if not parts.hostname:
        raise RefusedUrl("a webhook URL names a host")
    if parts.username or parts.password:
        raise RefusedUrl("a webhook URL carries no credentials (the signature authenticates us)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedUrl("the port is not a number from 1 to 65535") from None
    return parts.scheme, parts.hostname, port


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches or wraps: mapped, NAT64, 6to4, Teredo (its client)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why an address may not be called (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner, allow_private)
            return None if why is None else f"{why} (inside an IPv6 address)"
        if address in IPV4_COMPATIBLE and not address.is_loopback and not address.is_unspecified:
            return "IPv4-compatible (deprecated)"
        if address.is_site_local:
            return None if allow_private else "site-local"
    if address.is_link_local:
        return "link-local (cloud metadata lives there)"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return None if allow_private else "loopback"
    if address.is_private:
        return None if allow_private else "private"
    if not address.is_global:
        return "reserved"
    return None


def resolve(url: str, allow_private: bool) -> Target:
    """The URL's host resolved; every address it resolves to must be allowed (a name with one
    internal address among public ones is refused: which one a client connects to is not ours)."""
    _scheme, host, port = check_form(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"{host} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for text in addresses:
        why = refusal(ipaddress.ip_address(text.split("%")[0]), allow_private)
        if why is not None:
            raise RefusedUrl(f"{host} resolves to {text}, a {why} address: webhooks go to public addresses only")
    return Target(url, host, port, addresses[0])


def _checked(connection: type[HTTPConnection], allow_private: bool) -> type[HTTPConnection]:
    """A urllib3 connection class that refuses a socket connected to an address webhooks may not reach."""

    class Checked(connection):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            peer = str(sock.getpeername()[0])
            why = refusal(ipaddress.ip_address(peer.split("%")[0]), allow_private)
            if why is not None:
                sock.close()
                raise RefusedUrl(f"{self.host} connected to {peer}, a {why} address: refused")
            return sock

    return Checked


@cache
def _pools(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    class Http(HTTPConnectionPool):
        ConnectionCls = _checked(HTTPConnection, allow_private)

    class Https(HTTPSConnectionPool):
        ConnectionCls = _checked(HTTPSConnection, allow_private)  # type: ignore[assignment]

    return {"http": Http, "https": Https}


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pools(self.allow_private)


def session(allow_private: bool) -> requests.Session:
    """A requests session whose every connection is checked where it landed, with no proxies from
    the environment (redirects are for the caller to refuse: `allow_redirects=False`)."""
    checked = requests.Session()
    checked.trust_env = False
    adapter = _CheckedAdapter(allow_private)
    checked.mount("http://", adapter)
    checked.mount("https://", adapter)
    return checked
