"""The webhook egress policy: address classification in every spelling, names, the allowlist, pinning."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from server.config import Settings
from server.domain.alerts.egress import (
    EgressPolicy,
    EgressRefused,
    Resolver,
    address_refusal,
    ip_literal,
    normalize_host,
    parse_ipv4,
    pin,
)
from server.errors import InvalidArgument

DEFAULT = EgressPolicy()

# host as written in a URL -> the category it is refused for (no DNS involved).
REFUSED_HOSTS = {
    # loopback, in inet_aton's numeric forms too
    "127.0.0.1": "loopback",
    "127.1": "loopback",
    "127.0.1": "loopback",
    "0x7f000001": "loopback",
    "0x7f.1": "loopback",
    "2130706433": "loopback",
    "0177.0.0.1": "loopback",
    "017700000001": "loopback",
    "127.255.255.254": "loopback",
    "[::1]": "loopback",
    "[::ffff:127.0.0.1]": "loopback",
    "[::ffff:7f00:1]": "loopback",
    # cloud metadata
    "169.254.169.254": "metadata",
    "2852039166": "metadata",
    "0xa9fea9fe": "metadata",
    "0251.0376.0251.0376": "metadata",
    "[::ffff:169.254.169.254]": "metadata",
    "[2002:a9fe:a9fe::1]": "metadata",  # 6to4
    "[64:ff9b::a9fe:a9fe]": "metadata",  # NAT64
    "[fd00:ec2::254]": "metadata",
    "100.100.100.200": "metadata",
    "192.0.0.192": "metadata",
    # private, shared, link-local
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "[::ffff:10.0.0.1]": "private",
    "[64:ff9b::a00:1]": "private",
    "[fc00::1]": "private",
    "[fec0::1]": "private",
    "100.64.0.1": "shared",
    "100.127.255.255": "shared",
    "169.254.1.1": "link-local",
    "[fe80::1]": "link-local",
    "[fe80::1%25eth0]": "link-local",
    # unspecified, multicast, reserved, documentation
    "0.0.0.0": "unspecified",
    "0": "unspecified",
    "0.1.2.3": "unspecified",
    "[::]": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "[ff02::1]": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "198.18.0.1": "reserved",
    "192.0.0.9": "reserved",
    "[::8.8.8.8]": "reserved",  # deprecated IPv4-compatible form
    "[100::1]": "reserved",
    "[64:ff9b:1::1]": "reserved",
    "[2001::1]": "reserved",  # Teredo
    "192.0.2.1": "documentation",
    "[2001:db8::1]": "documentation",
    # names that only resolve inside
    "localhost": "internal name",
    "LOCALHOST.": "internal name",
    "api.localhost": "internal name",
    "metadata.google.internal": "internal name",
    "metadata": "internal name",
    "metadata.goog": "internal name",
    "ip-10-0-0-1.ec2.internal": "internal name",
    "printer.local": "internal name",
    "nas.home.arpa": "internal name",
    "intranet": "internal name",
    # full-width and ideographic-dot spellings that IDNA folds
    "ｌｏｃａｌｈｏｓｔ": "internal name",
    "１２７.０.０.１": "loopback",
    "127。0。0。1": "loopback",
}

PUBLIC_HOSTS = [
    "example.com",
    "hooks.slack.com",
    "EXAMPLE.COM.",
    "8.8.8.8",
    "93.184.216.34",
    "1.1.1.1",
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "192.0.1.1",
    "[2606:4700:4700::1111]",
    "[2001:4860:4860::8888]",
    "[::ffff:8.8.8.8]",
    "[64:ff9b::808:808]",  # NAT64 of a public address
    "[2002:808:808::1]",  # 6to4 of a public address
    "1.2.3.4.5",  # not an address: a (public-looking) name
    "0x1.example.com",
    "bücher.example",
]


@pytest.mark.parametrize(("host", "category"), REFUSED_HOSTS.items())
def test_internal_hosts_are_refused_at_save_time(host: str, category: str) -> None:
    assert DEFAULT.url_refusal(host) == category


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_hosts_pass(host: str) -> None:
    assert DEFAULT.url_refusal(host) is None


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("10.1.2", "10.1.0.2"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("0177.0.0.01", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("0x", "0.0.0.0"),
    ],
)
def test_numeric_ipv4_forms_read_as_inet_aton_does(text: str, address: str) -> None:
    assert parse_ipv4(text) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    "text", ["256.0.0.1", "1.2.3.4.5", "4294967296", "08.0.0.1", "1..2", "1.2.3.", "+1", "example", "1.2.3.256"]
)
def test_non_addresses_are_names(text: str) -> None:
    assert parse_ipv4(text) is None


def test_ipv6_literals_and_zones() -> None:
    assert ip_literal("[fe80::1%eth0]") == ipaddress.IPv6Address("fe80::1")
    assert ip_literal("not:an:address") is None
    assert normalize_host("Hooks.Example.COM.") == "hooks.example.com"
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::101:101", "2a00:1450:4001::1"]
)
def test_resolved_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


# ------------------------------------------------------------------------------------ allowlist


def test_the_allowlist_admits_named_networks_and_hosts_only() -> None:
    policy = EgressPolicy.parse(" 10.0.0.0/8, 127.0.0.1 fd00::/8,hooks.internal ,*.corp.example ")
    assert policy.url_refusal("10.20.30.40") is None
    assert policy.url_refusal("0x0a000001") is None  # 10.0.0.1 spelt as a number
    assert policy.url_refusal("127.1") is None and policy.url_refusal("[::ffff:127.0.0.1]") is None
    assert policy.url_refusal("[fd12::1]") is None
    assert policy.url_refusal("hooks.internal") is None and policy.url_refusal("HOOKS.INTERNAL.") is None
    assert policy.url_refusal("a.b.corp.example") is None
    # Not admitted: other addresses and names, and the bare domain of a wildcard.
    assert policy.url_refusal("127.0.0.2") == "loopback"
    assert policy.url_refusal("169.254.169.254") == "metadata"
    assert policy.url_refusal("metadata.google.internal") == "internal name"
    assert policy.url_refusal("other.internal") == "internal name"
    assert policy.url_refusal("corp.example") is None  # public-looking name: only DNS can tell
    assert policy.address_refusal("corp.example", ipaddress.ip_address("10.9.9.9")) is None
    assert policy.address_refusal("corp.example", ipaddress.ip_address("192.168.0.1")) == "private"
    # A name on the allowlist is trusted whatever it resolves to.
    assert policy.address_refusal("hooks.internal", ipaddress.ip_address("192.168.0.1")) is None


@pytest.mark.parametrize("text", ["10.0.0.0/33", "not a host!", "*.", "-bad.example", "http://x"])
def test_a_bad_allowlist_entry_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a network, address or host name"):
        EgressPolicy.parse(text)


def test_the_setting_is_validated_naming_the_variable() -> None:
    env = {"INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,hooks.internal"}
    assert Settings.from_env(env).webhook_policy == EgressPolicy.parse("10.0.0.0/8 hooks.internal")
    assert Settings.from_env({}).webhook_policy == EgressPolicy()
    with pytest.raises(InvalidArgument) as err:
        Settings.from_env({"INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/40"})
    assert "INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS" in str(err.value)


# ------------------------------------------------------------------------------------ pinning


def _dns(*addresses: str) -> tuple[list[tuple[str, int]], Resolver]:
    lookups: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        lookups.append((host, port))
        return addresses

    return lookups, resolve


def test_pin_resolves_once_and_keeps_the_checked_addresses() -> None:
    lookups, resolve = _dns("93.184.216.34", "2606:2800:220:1::1")
    pinned = pin("https://Hooks.Example.com/a/b?x=1#frag", DEFAULT, resolve)
    assert (pinned.scheme, pinned.host, pinned.port, pinned.target) == (
        "https",
        "hooks.example.com",
        443,
        "/a/b?x=1",
    )
    assert pinned.addresses == ("93.184.216.34", "2606:2800:220:1::1")
    assert lookups == [("hooks.example.com", 443)]


@pytest.mark.parametrize(
    ("addresses", "category"),
    [
        (("127.0.0.1",), "loopback"),
        (("93.184.216.34", "10.0.0.1"), "private"),  # one internal answer refuses the name
        (("::ffff:169.254.169.254",), "metadata"),
        (("fe80::1",), "link-local"),
    ],
)
def test_pin_refuses_a_name_resolving_inside(addresses: tuple[str, ...], category: str) -> None:
    _, resolve = _dns(*addresses)
    with pytest.raises(EgressRefused) as err:
        pin("http://hooks.example.com/", DEFAULT, resolve)
    assert err.value.category == category


def test_pin_refuses_what_is_not_an_http_url() -> None:
    _, resolve = _dns("93.184.216.34")
    for url in ("ftp://example.com/", "file:///etc/passwd", "http:///x", "http://example.com:99999/"):
        with pytest.raises(EgressRefused):
            pin(url, DEFAULT, resolve)
