"""The egress guard: which hosts an upstream may point at, however the address is spelled."""
import socket

import pytest

from portal import egress
from portal.egress import EgressRefused

REFUSED = [
    "169.254.169.254",            # cloud metadata
    "127.0.0.1", "127.8.9.10",    # loopback
    "[::1]",
    "10.0.0.1", "172.16.5.4", "192.168.1.1",  # RFC 1918
    "100.64.0.1",                 # shared address space (CGNAT)
    "169.254.1.1", "[fe80::1]",   # link-local
    "0.0.0.0", "[::]",            # unspecified
    "224.0.0.1", "[ff02::1]",     # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "198.18.0.1", "192.0.2.1", "[2001:db8::1]",  # benchmarking, documentation
    "[fd12:3456::1]",             # unique local
    "2130706433",                 # 127.0.0.1 as one decimal number
    "0x7f.1", "0x7f000001",       # hex
    "017700000001", "0177.0.0.1",  # octal
    "127.1",                      # short form
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:10.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:169.254.169.254]",
    "[64:ff9b::127.0.0.1]", "[64:ff9b::a9fe:a9fe]",  # NAT64 of loopback and metadata
    "[64:ff9b:1::a00:1]",         # local-use NAT64
    "[2002:7f00:1::]",            # 6to4 of loopback
    "[::127.0.0.1]",              # IPv4-compatible IPv6
    "[fe80::1%25eth0]",           # scoped link-local
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "[2606:4700:4700::1111]", "[64:ff9b::808:808]", "134744072"]


@pytest.mark.parametrize("host", REFUSED)
def test_private_and_special_addresses_are_refused_in_every_spelling(host):
    with pytest.raises(EgressRefused) as refused:
        egress.resolve(host.replace("%25", "%"), 443, allow_private=False)
    assert refused.value.field == "base_url"


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_pass(host):
    [target] = egress.resolve(host, 443, allow_private=False)
    assert target.sockaddr[1] == 443


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "[::1]", "10.0.0.1", "[::ffff:127.0.0.1]"])
def test_allowing_a_private_host_lets_it_through_and_connects_to_the_number_it_spells(host):
    [target] = egress.resolve(host, 8080, allow_private=True)
    expected = {"[::1]": "::1", "10.0.0.1": "10.0.0.1", "[::ffff:127.0.0.1]": "::ffff:7f00:1"}.get(host, "127.0.0.1")
    assert target.sockaddr[:2] == (expected, 8080)


@pytest.mark.parametrize("host", ["169.254.169.254", "[::ffff:169.254.169.254]", "[fd00:ec2::254]", "100.100.100.200",
                                  "metadata.google.internal", "METADATA.google.internal."])
def test_cloud_metadata_is_refused_even_for_a_private_host(host):
    with pytest.raises(EgressRefused, match="metadata"):
        egress.resolve(host, 80, allow_private=True)


def _resolving_to(*addresses):
    def fake(host, port):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in addresses]
    return fake


@pytest.mark.parametrize("addresses", [("127.0.0.1",), ("169.254.169.254",), ("::1",), ("10.0.0.1",),
                                       ("::ffff:127.0.0.1",), ("93.184.216.34", "127.0.0.1")])
def test_a_name_is_refused_when_any_of_its_addresses_is(monkeypatch, addresses):
    monkeypatch.setattr(egress, "resolver", _resolving_to(*addresses))
    with pytest.raises(EgressRefused, match="api.example.com"):
        egress.resolve("api.example.com", 443, allow_private=False)


def test_a_name_with_public_addresses_gives_each_to_connect_to(monkeypatch):
    monkeypatch.setattr(egress, "resolver", _resolving_to("93.184.216.34", "2606:2800:220:1::1"))
    targets = egress.resolve("api.example.com", 443, allow_private=False)
    assert [t.sockaddr[0] for t in targets] == ["93.184.216.34", "2606:2800:220:1::1"]


def test_localhost_resolves_to_loopback_and_is_refused():
    with pytest.raises(EgressRefused, match="localhost"):
        egress.resolve("localhost", 80, allow_private=False)


@pytest.mark.parametrize("url, production, allow, refused", [
    ("http://api.example.com/v1", True, False, True),    # production: https only
    ("http://10.0.0.5:8000/v1", True, True, False),      # ... except an upstream allowed a private host
    ("https://api.example.com/v1", True, False, False),
    ("http://api.example.com/v1", False, False, False),  # development: http is fine
])
def test_https_only_in_production(monkeypatch, url, production, allow, refused):
    monkeypatch.setattr(egress, "resolver", _resolving_to("10.0.0.5" if allow else "93.184.216.34"))
    if refused:
        with pytest.raises(EgressRefused, match="https"):
            egress.check_base_url(url, production=production, allow_private=allow)
    else:
        egress.check_base_url(url, production=production, allow_private=allow)


def test_a_name_that_does_not_resolve_yet_is_accepted_when_saved(monkeypatch):
    def nowhere(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(egress, "resolver", nowhere)
    assert egress.check_base_url("https://not-yet.example/v1", production=True, allow_private=False) == []
