"""The client's address: the socket peer, unless a trusted proxy forwards for someone; then the
right-most untrusted X-Forwarded-For entry. A forged header from anyone else changes nothing."""

from __future__ import annotations

import pytest

from model_go.wire.client_ip import TrustedProxies

PROXIES = TrustedProxies.parse("127.0.0.1/32, 10.0.0.0/8 ,fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # forged by an untrusted peer: ignored
        ("127.0.0.1", None, "127.0.0.1"),  # a trusted proxy that names nobody
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client's own entry is not read
        ("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"),  # through two proxies
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # every hop trusted: the left-most
        ("127.0.0.1", "6.6.6.6, not-an-ip", "127.0.0.1"),  # garbage: nothing left of it is believed
        ("127.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("127.0.0.1", "[2001:db8::2]:443", "2001:db8::2"),
        ("fd00::5", "2001:db8::3, fd00::1", "2001:db8::3"),  # an IPv6 proxy chain
        ("::ffff:127.0.0.1", "198.51.100.8", "198.51.100.8"),  # an IPv4-mapped peer is that IPv4 peer
        ("2001:db8::9", "198.51.100.8", "2001:db8::9"),
        (None, "198.51.100.8", None),
    ],
)
def test_client_ip(peer: str | None, forwarded_for: str | None, client: str | None) -> None:
    assert PROXIES.client_ip(peer, forwarded_for) == client


def test_no_trusted_proxies_reads_only_the_peer() -> None:
    assert TrustedProxies.parse("").client_ip("127.0.0.1", "1.2.3.4") == "127.0.0.1"


def test_an_asgi_scope_with_several_header_lines_is_one_list() -> None:
    scope = {
        "client": ("127.0.0.1", 5555),
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.7")],
    }
    assert PROXIES.of_scope(scope) == "198.51.100.7"
    assert TrustedProxies().of_scope(scope) == "127.0.0.1"
    assert PROXIES.of_scope({"headers": []}) is None


def test_a_long_chain_is_read_from_the_right_only() -> None:
    chain = ", ".join(["10.0.0.1"] * 10_000 + ["198.51.100.7", "10.0.0.2"])
    assert PROXIES.client_ip("127.0.0.1", chain) == "198.51.100.7"


def test_a_bad_cidr_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a CIDR"):
        TrustedProxies.parse("127.0.0.1/32,10.0.0.0/33")
