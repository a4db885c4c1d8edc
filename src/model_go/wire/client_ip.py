"""The client's address: the socket peer, unless the peer is a trusted reverse proxy
(MODELGO_TRUSTED_PROXIES); then the right-most address in X-Forwarded-For that is not a trusted
proxy itself. Entries left of that one are whatever the client wrote, so they are never read, and an
X-Forwarded-For from an untrusted peer changes nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS = 32  # X-Forwarded-For entries read from the right; a longer chain is not a real one


class TrustedProxies:
    """The networks whose X-Forwarded-For is believed. Built once from the settings."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """Comma-separated CIDRs or single addresses; ValueError names a bad one."""
        networks = []
        for part in text.split(","):
            if part := part.strip():
                try:
                    networks.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    raise ValueError(f"MODELGO_TRUSTED_PROXIES: {part[:64]!r} is not a CIDR") from None
        return cls(networks)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def of_scope(self, scope: Mapping[str, Any]) -> str | None:
        """The client's address of an ASGI request: what every reader of it (relay, API) calls."""
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if not self.networks:
            return peer
        # several X-Forwarded-For lines are one list, in order (RFC 9110 field combination)
        values = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
        return self.client_ip(peer, ",".join(values))

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address for logs and per-address limits."""
        if not self.networks or peer is None or not forwarded_for:
            return peer
        address = _address(peer)
        if address is None or not self.trusts(address):
            return peer
        for entry in reversed(forwarded_for.rsplit(",", MAX_HOPS)[-MAX_HOPS:]):
            hop = _address(entry)
            if hop is None:
                break  # not an address: nothing further left can be believed
            address = hop
            if not self.trusts(hop):
                break
        return str(address)


def _address(text: str) -> Address | None:
    """An address as peers and proxies write it: "1.2.3.4", "1.2.3.4:5678", "::1", "[::1]:5678";
    an IPv4-mapped IPv6 address as the IPv4 one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
