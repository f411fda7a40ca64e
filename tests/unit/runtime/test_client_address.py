"""The client's address behind trusted proxies: whatever a caller writes in
X-Forwarded-For, the address the throttles count is one no untrusted hop chose."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from apex_runtime.clientaddr import client_address, trusted_networks

PROXIES = trusted_networks(["10.0.0.0/8", "fd00::/8"])
ipv4 = st.ip_addresses(v=4).map(str)
anything = st.one_of(ipv4, st.ip_addresses(v=6).map(str), st.text(max_size=20))


def test_the_user_behind_a_load_balancer_an_ingress_and_the_gateway() -> None:
    # user -> LB (10.0.0.5 appends the user) -> ingress (appends the LB) -> gateway (appends the ingress)
    header = "203.0.113.7, 10.0.0.5, 10.1.2.3"
    assert client_address("10.4.4.4", header, PROXIES) == "203.0.113.7"
    assert client_address("10.4.4.4", "198.51.100.1, " + header, PROXIES) == "203.0.113.7", "a forged entry"


def test_without_trusted_networks_the_peer_or_the_fixed_hops() -> None:
    assert client_address("192.0.2.1", "203.0.113.7", ()) == "192.0.2.1"
    assert client_address("10.0.0.1", "198.51.100.9, 203.0.113.7", (), hops=1) == "203.0.113.7"


@settings(max_examples=200)
@given(
    peer=ipv4.filter(lambda a: ipaddress.ip_address(a) not in PROXIES[0]),
    forged=st.lists(anything, max_size=5),
)
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(peer: str, forged: list[str]) -> None:
    assert client_address(peer, ", ".join(forged), PROXIES) == peer


@settings(max_examples=200)
@given(
    user=ipv4.filter(lambda a: ipaddress.ip_address(a) not in PROXIES[0]),
    forged=st.lists(anything, max_size=5),
    hops=st.lists(
        st.integers(1, 2**24 - 2).map(lambda n: str(ipaddress.ip_address(0x0A000000 + n))),
        min_size=1,
        max_size=4,
    ),
)
def test_forged_entries_left_of_the_user_never_count(user: str, forged: list[str], hops: list[str]) -> None:
    """Trusted proxies append what they saw; the caller controls only what is left of
    the first one, and never moves the answer off the address the first proxy saw."""
    *appended, peer = hops
    header = ", ".join([*forged, user, *appended])
    assert client_address(peer, header, PROXIES) == user
