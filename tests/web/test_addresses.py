"""web/addresses.py: who is calling, with and without trusted proxies, and the allowlist."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from idenfy_stepup.web.addresses import allowed, client_ip, networks

PROXIES = networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def request(peer: str | None, forwarded: str | None = None) -> Request:
    """A request as uvicorn hands it over: its peer, and an X-Forwarded-For if one was sent."""
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    if peer is not None:
        scope["client"] = (peer, 50000)
    return Request(scope)


def test_without_trusted_proxies_the_peer_is_the_client_and_xff_is_ignored() -> None:
    assert client_ip(request("203.0.113.7", "198.51.100.1"), ()) == "203.0.113.7"


def test_an_untrusted_peer_cannot_forge_its_address() -> None:
    assert client_ip(request("203.0.113.7", "10.1.1.1, 198.51.100.1"), PROXIES) == "203.0.113.7"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("198.51.100.1", "198.51.100.1"),
        # The right-most hop that is not a trusted proxy: what the client sent is left of it.
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("198.51.100.1, 10.2.2.2", "198.51.100.1"),  # a chain of trusted proxies is skipped
        (" 198.51.100.1 ,10.2.2.2, ", "198.51.100.1"),  # blanks and empty hops
        ("2001:db8::1, 2001:db8:ffff::2", "2001:db8::1"),
        ("not-an-address", "not-an-address"),  # not trusted, so it is the client: never a proxy
    ],
)
def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    forwarded: str, client: str
) -> None:
    assert client_ip(request("10.0.0.1", forwarded), PROXIES) == client


@pytest.mark.parametrize("forwarded", [None, "", "10.3.3.3, 10.4.4.4"])
def test_a_trusted_proxy_without_an_untrusted_hop_is_the_client(forwarded: str | None) -> None:
    assert client_ip(request("10.0.0.1", forwarded), PROXIES) == "10.0.0.1"


def test_no_peer_is_an_empty_address() -> None:
    assert client_ip(request(None, "198.51.100.1"), PROXIES) == ""


def test_no_allowlist_allows_everyone() -> None:
    assert allowed(request("203.0.113.7"), (), PROXIES)


@pytest.mark.parametrize(
    ("peer", "forwarded", "ok"),
    [
        ("192.0.2.10", None, True),
        ("203.0.113.7", None, False),
        ("10.0.0.1", "192.0.2.10", True),  # behind the proxy: the forwarded client counts
        ("10.0.0.1", "203.0.113.7", False),
        ("203.0.113.7", "192.0.2.10", False),  # a forged header from outside: the peer counts
        ("testclient", None, False),  # not an address: never on a list
    ],
)
def test_the_allowlist_checks_the_client_address(
    peer: str, forwarded: str | None, ok: bool
) -> None:
    allowlist = networks(["192.0.2.0/24"])
    assert allowed(request(peer, forwarded), allowlist, PROXIES) is ok


def test_networks_accept_hosts_and_blanks() -> None:
    assert [str(n) for n in networks([" 192.0.2.1 ", "2001:db8::/32"])] == [
        "192.0.2.1/32",
        "2001:db8::/32",
    ]
