"""Who is calling: the client's address behind the proxies an operator trusts.

A load balancer, an ingress controller and the gateway's ``/auth`` proxy each append
the address they saw to ``X-Forwarded-For``. Everything to the left of the first hop
nobody trusted was written by the caller and can say anything, so the client is found
by walking the chain from the right (the socket peer first) past every address inside
the trusted networks; the first address outside them is the client. Without trusted
networks the socket peer is the client. (This is what nginx's ``real_ip_recursive``
does.) Per-address throttles keyed on this address then count people, not the load
balancer, and a forged header cannot move the count onto someone else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "fd00::/8", "192.0.2.7"]`` as networks; raises ValueError on a typo."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network], *, hops: int = 0
) -> str | None:
    """The caller's address. ``trusted`` (the networks of the operator's proxies) wins;
    without it, ``hops`` counts fixed proxies (the older setting); with neither, the
    socket peer. Never an address that a hop nobody trusts could have chosen."""
    forwarded = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()]
    if not trusted:
        if hops and len(forwarded) >= hops:
            return forwarded[-hops]
        return peer
    chain = [*forwarded, peer] if peer else forwarded
    nearest = peer
    for entry in reversed(chain):
        address = _parse(entry)
        if address is None:
            # a trusted proxy passed something that is no address: stop at that proxy
            return nearest
        if not any(address in network for network in trusted):
            return str(address)
        nearest = str(address)
    return nearest
