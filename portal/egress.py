"""Where an upstream may point: the egress guard against server-side request forgery.

An upstream's base URL is typed by an operator, but the gateway connects to it with its own
network position: a URL naming 169.254.169.254 (cloud metadata, with instance credentials),
127.0.0.1 (this machine's Redis, Postgres, admin ports) or a 10.x host would turn the gateway into
a way in. So the host must resolve only to public addresses, unless the operator ticks "allow a
private host" for that upstream (a local model server on the LAN, a sidecar on loopback).

The check runs when the base URL is saved, and again at every connection (DNS rebinding: a name
may resolve to a public address when saved and to 127.0.0.1 a minute later). At call time the
proxy connects to exactly the address it checked (proxy/upstreams/http.py).

Refused without the flag: private (RFC 1918, ULA fc00::/7), loopback, link-local, shared
(100.64.0.0/10), reserved, multicast, unspecified, documentation and benchmarking ranges, and the
same addresses spelled another way: IPv4-mapped IPv6 (::ffff:127.0.0.1), NAT64 (64:ff9b::/96),
6to4 (2002::/16), and the numeric forms inet_aton accepts (2130706433, 0x7f.1, 017700000001,
127.1). Cloud metadata addresses are refused even with the flag: no model server lives there.

In production base URLs must use https; plain http is accepted only for an upstream allowed a
private host (a model server on the operator's own network, where TLS is often absent).
"""
import ipaddress
import re
import socket
import sys
from dataclasses import dataclass
from socket import timeout as _SocketTimeout
from typing import Optional, Union
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from .errors import InvalidInput

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# Instance metadata services: refused even for upstreams allowed a private host.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ...
    "169.254.170.2",     # AWS ECS task metadata
    "169.254.169.253",   # AWS DNS / time
    "169.254.169.123",   # AWS time sync
    "100.100.100.200",   # Alibaba Cloud
    "192.0.0.192",       # Oracle Cloud (legacy)
    "fd00:ec2::254",     # AWS over IPv6
    "fd00:ec2::23",
))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data",
                            "instance-data.ec2.internal"})

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64: an operator's own network
_6TO4 = ipaddress.ip_network("2002::/16")
# Ranges `is_global` lets through in some Python versions that no API server should be on.
_ALSO_REFUSED = tuple(ipaddress.ip_network(n) for n in (
    "100.64.0.0/10",     # shared address space (carrier-grade NAT; Alibaba's metadata lives here)
    "192.0.0.0/24",      # IETF protocol assignments
    "198.18.0.0/15",     # benchmarking
    "2001::/23",         # IETF protocol assignments (Teredo included)
    "2001:db8::/32",     # documentation
    "fec0::/10",         # site-local (deprecated)
))
# What inet_aton would read as an IPv4 address: dotted parts, each decimal, octal or hex.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


class EgressRefused(InvalidInput):
    """The upstream's URL or the address its host resolves to is not one the gateway may connect to."""

    def __init__(self, message: str):
        super().__init__(message, field="base_url")


def _getaddrinfo(host: str, port: int):
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


# The resolver: tests replace it (monkeypatch `portal.egress.resolver`) to make names resolve anywhere.
resolver = _getaddrinfo


def literal_address(host: str) -> Optional[IPAddress]:
    """The address `host` spells, in any form the system's resolver would accept as a number; else None."""
    host = host.strip().strip("[]")
    if "%" in host:  # an IPv6 zone ("fe80::1%eth0"): link-local by construction
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _6TO4:
        return ip.sixtofour
    # IPv4-compatible (::a.b.c.d, deprecated but still parsed by some stacks).
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def is_metadata(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return inner in METADATA_ADDRESSES
    return ip in METADATA_ADDRESSES


def is_public(ip: IPAddress) -> bool:
    """True for an address on the public internet; False for every kind the module docstring lists."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
        if ip in _NAT64_LOCAL:
            return False
    if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return not any(ip.version == net.version and ip in net for net in _ALSO_REFUSED)


def check_address(ip: IPAddress, host: str, *, allow_private: bool) -> None:
    """EgressRefused unless the gateway may connect to `ip` (which `host` resolved to)."""
    shown = host if str(ip) == host.strip("[]") else f"{host} ({ip})"
    if is_metadata(ip):
        raise EgressRefused(f"{shown} is a cloud metadata address; upstreams may never point there.")
    if not allow_private and not is_public(ip):
        raise EgressRefused(f"{shown} is a private, loopback, link-local or reserved address. If this upstream "
                            "really runs on your own network, tick \"allow a private host\" for it "
                            "(--allow-private-host).")


@dataclass(frozen=True)
class Target:
    """One address the gateway may connect to, as the socket module takes it."""

    family: int
    sockaddr: tuple


def resolve(host: str, port: int, *, allow_private: bool) -> list[Target]:
    """Every address `host` has, each checked; EgressRefused if ANY is refused (an attacker's name may
    list a public and a private address and hope for the second). socket.gaierror if it does not resolve."""
    bare = host.strip().strip("[]")
    if bare.lower().rstrip(".") in METADATA_NAMES:
        raise EgressRefused(f"{host} is a cloud metadata service; upstreams may never point there.")
    literal = literal_address(bare)
    if literal is not None:
        check_address(literal, host, allow_private=allow_private)
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        sockaddr = (str(literal), port, 0, 0) if literal.version == 6 else (str(literal), port)
        return [Target(family, sockaddr)]
    targets = []
    for family, _type, _proto, _canon, sockaddr in resolver(bare, port):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and len(sockaddr) > 3 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")  # a scoped address: never public
        check_address(ip, host, allow_private=allow_private)
        targets.append(Target(family, sockaddr))
    if not targets:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    return targets


def check_url_scheme(url: str, *, production: bool, allow_private: bool) -> None:
    """EgressRefused for plain http in production, unless the upstream is allowed a private host."""
    if production and urlsplit(url).scheme != "https" and not allow_private:
        raise EgressRefused("In production an upstream's base URL must use https:// (plain http only for an "
                            "upstream on your own network, allowed a private host).")


def check_base_url(url: str, *, production: bool, allow_private: bool) -> list[Target]:
    """Check an upstream's base URL when it is saved: its scheme, and every address its host resolves to now.

    A host that does not resolve now is accepted (it may be set up later); each call checks again.
    """
    check_url_scheme(url, production=production, allow_private=allow_private)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        return resolve(parts.hostname or "", port, allow_private=allow_private)
    except (socket.gaierror, UnicodeError):
        return []


# -- call time: connections that resolve, check and connect to the checked address ----------------
#
# urllib3 resolves a host inside `_new_conn`; these subclasses do it through `resolve` instead,
# so every connection the proxy opens is checked at that moment, and the socket is connected to
# exactly the address that passed (no second lookup a rebinding DNS server could answer
# differently). TLS still verifies the certificate against the host name (urllib3 wraps the
# socket with server_hostname=self.host afterwards).

class _Guarded:
    allow_private = False

    def _new_conn(self):
        try:
            targets = resolve(self._dns_host, self.port, allow_private=self.allow_private)
        except (socket.gaierror, UnicodeError) as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: Optional[OSError] = None
        for target in targets:
            sock = socket.socket(target.family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(target.sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, _SocketTimeout):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                            f"(connect timeout={self.timeout})") from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class PrivateHTTPConnection(_Guarded, HTTPConnection):
    allow_private = True


class PrivateHTTPSConnection(_Guarded, HTTPSConnection):
    allow_private = True


def _pool(base, connection):
    return type(f"{connection.__name__}Pool", (base,), {"ConnectionCls": connection})


_POOLS = {
    False: {"http": _pool(HTTPConnectionPool, GuardedHTTPConnection),
            "https": _pool(HTTPSConnectionPool, GuardedHTTPSConnection)},
    True: {"http": _pool(HTTPConnectionPool, PrivateHTTPConnection),
           "https": _pool(HTTPSConnectionPool, PrivateHTTPSConnection)},
}


def guarded_pools(allow_private: bool = False) -> dict:
    """urllib3's pool classes by scheme, whose every connection goes through the egress check (for a
    PoolManager's `pool_classes_by_scheme`)."""
    return dict(_POOLS[allow_private])


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose every connection goes through the egress check.

    EgressRefused comes out of `session.request` as it is (requests and urllib3 only wrap
    OSError and their own errors), so callers can tell a refusal from a network failure.
    """

    def __init__(self, *args, allow_private: bool = False, **kwargs):
        self.allow_private = allow_private
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = guarded_pools(self.allow_private)

    def proxy_manager_for(self, *args, **kwargs):  # pragma: no cover - sessions here never use proxies
        raise EgressRefused("the gateway does not connect to upstreams through proxies")
