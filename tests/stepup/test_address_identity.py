"""stepup/limits.address_identity: the address an abuse limit counts against."""

from __future__ import annotations

import pytest

from idenfy_stepup.stepup.limits import address_identity


@pytest.mark.parametrize(
    ("raw", "identity"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # IPv6: its /64
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64 however it is written
        ("::1", "::/64"),
        ("", "unknown"),  # no peer address
        ("testclient", "testclient"),  # not an address: counted as given
    ],
)
def test_address_identity(raw: str, identity: str) -> None:
    assert address_identity(raw) == identity


def test_two_hosts_of_one_ipv6_network_are_one_identity_and_other_networks_are_not() -> None:
    assert address_identity("2001:db8:0:1::a") == address_identity("2001:db8:0:1:ffff::b")
    assert address_identity("2001:db8:0:1::a") != address_identity("2001:db8:0:2::a")
