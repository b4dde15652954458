"""Where alert webhooks may go: the address policy against SSRF, and the pinned resolution of a URL.

A webhook URL is chosen by a tenant, but the request leaves from the server, so without a policy a
tenant reaches what only the server can: loopback services, the private network, cloud metadata
(169.254.169.254 and its kin). The policy refuses every address that is not public unicast,
including the spellings that reach one in disguise: IPv4 in inet_aton's numeric forms (`127.1`,
`0x7f000001`, `2852039166`, octal), IPv4-mapped and -compatible IPv6, and IPv4 inside 6to4 and
NAT64 addresses. An operator allowlist (networks and host names) admits chosen internal targets.

Two checks use it:
- at save time, `url_refusal` looks at the URL's host as written (no DNS): literal internal
  addresses and names that only resolve inside (localhost, *.internal, single labels, ...);
- at send time, `pin` resolves the host once, checks every address, and returns them so that the
  connection goes to a checked address (a DNS answer that changes between check and connect, as
  in DNS rebinding, cannot swap it).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (textual IPs), in the resolver's order.
Resolver = Callable[[str, int], Sequence[str]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Cloud instance-metadata endpoints, named as such in logs (all are inside refused ranges anyway).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)

# IANA special-purpose IPv4 ranges (RFC 6890 and successors): none is a public webhook target.
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "reserved"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

# IPv6 outside global unicast (2000::/3) is refused as a whole; these name the usual parts of it.
_GLOBAL_UNICAST = _V6("2000::/3")
_OUTSIDE_GLOBAL: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private"),
    (_V6("fc00::/7"), "private"),
    (_V6("ff00::/8"), "multicast"),
)
# Special-purpose ranges inside 2000::/3 (Teredo and other IETF assignments, documentation).
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("2001::/23"), "reserved"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
)
_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIXTOFOUR = _V6("2002::/16")

# Names that resolve only inside a host or a private network (RFC 6761, 6762, 8375; cloud DNS).
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa", ".localdomain", ".intranet", ".lan")
_INTERNAL_NAMES = frozenset({"localhost", "metadata.goog", "instance-data", "localhost.localdomain"})
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


class EgressRefused(Exception):
    """A webhook target the policy refuses; `category` says why (loopback, private, ...)."""

    def __init__(self, category: str):
        super().__init__(f"refused by the egress policy ({category})")
        self.category = category


# ------------------------------------------------------------------------------------ addresses


def _inet_aton_part(text: str) -> int | None:
    """One part of an inet_aton address: decimal, 0x-hex or 0-octal."""
    if text[:2] in ("0x", "0X"):
        digits, base = text[2:] or "0", 16
    elif len(text) > 1 and text[0] == "0":
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """`text` as libc's inet_aton reads it (what getaddrinfo connects to), or None.

    1 to 4 parts separated by dots, each decimal, hex (0x) or octal (leading 0); the last part
    fills the remaining bytes: `127.1` is 127.0.0.1, `0x7f000001` and `2130706433` too.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or any(not p for p in parts):
        return None
    values = [_inet_aton_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    *head, last = [v for v in values if v is not None]
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    return ipaddress.IPv4Address(number << 8 * (4 - len(head)) | last)


def ip_literal(host: str) -> IPAddress | None:
    """The address a host written in a URL denotes by itself (no DNS), or None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4(host)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches: IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96)."""
    if ip in _MAPPED:
        return ip.ipv4_mapped
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (a category), or None when it is one."""
    if ip in METADATA:
        return "metadata"
    if isinstance(ip, ipaddress.IPv4Address):
        return next((category for network, category in _REFUSED_V4 if ip in network), None)
    inner = embedded_ipv4(ip)
    if inner is not None:
        return address_refusal(inner)
    for network, category in _OUTSIDE_GLOBAL:
        if ip in network:
            return category
    if ip not in _GLOBAL_UNICAST:  # incl. deprecated IPv4-compatible ::a.b.c.d, 100::/64, NAT64 local use
        return "reserved"
    return next((category for network, category in _REFUSED_V6 if ip in network), None)


# ------------------------------------------------------------------------------------ host names


def normalize_host(host: str) -> str:
    """The host as DNS sees it: lower case, IDNA-encoded (full-width forms folded), no final dot."""
    host = host.strip("[]").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid host name") from None
    return host[:-1] if host.endswith(".") and ":" not in host else host


def name_refusal(host: str) -> str | None:
    """Why a host name is obviously internal (a category), or None; no DNS is asked."""
    if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
        return "internal name"
    if "." not in host:  # a single label resolves only through the server's local search domains
        return "internal name"
    return None


# ------------------------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class EgressPolicy:
    """Public unicast addresses, plus what the operator's allowlist admits."""

    networks: tuple[IPNetwork, ...] = ()
    # Exact host names, or "*.example.org" for every name under example.org.
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EgressPolicy:
        """An allowlist: CIDRs, addresses and host names separated by commas or spaces."""
        networks: list[IPNetwork] = []
        names: list[str] = []
        for entry in re.split(r"[,\s]+", text.strip()):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            bare = name[2:] if name.startswith("*.") else name
            if not bare or not all(_LABEL.fullmatch(label) for label in bare.split(".")):
                raise ValueError(f"not a network, address or host name: {entry!r}")
            names.append(name)
        return cls(tuple(networks), tuple(names))

    def admits_name(self, host: str) -> bool:
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.names)

    def admits_address(self, ip: IPAddress) -> bool:
        inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (inner is not None and inner in net) for net in self.networks)

    def url_refusal(self, host: str) -> str | None:
        """Save-time check of a URL's host as written: why it is refused, or None."""
        host = normalize_host(host)
        if self.admits_name(host):
            return None
        ip = ip_literal(host)
        if ip is not None:
            return None if self.admits_address(ip) else address_refusal(ip)
        return name_refusal(host)

    def address_refusal(self, host: str, ip: IPAddress) -> str | None:
        """Send-time check of one address `host` resolved to: why it is refused, or None."""
        if self.admits_name(host) or self.admits_address(ip):
            return None
        return address_refusal(ip)


# ------------------------------------------------------------------------------------ send time


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for `host` (TCP), without repeats, in its order."""
    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class Pinned:
    """A checked webhook target: connect to `addresses`, but speak HTTP and TLS to `host`."""

    scheme: str
    host: str
    port: int
    target: str  # path and query of the request line
    addresses: tuple[str, ...]


def pin(url: str, policy: EgressPolicy, resolve: Resolver = system_resolve) -> Pinned:
    """Resolves the URL's host once and checks every address; raises EgressRefused.

    Every address must pass: a name that resolves to a public and an internal address is refused
    rather than trusted to land on the public one. A resolution failure is an OSError (retried).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise EgressRefused("unsupported URL")
    try:
        host = normalize_host(parts.hostname)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EgressRefused("unsupported URL") from None
    addresses = tuple(resolve(host, port))
    if not addresses:
        raise OSError(f"no address for {host}")
    for address in addresses:
        refusal = policy.address_refusal(host, ipaddress.ip_address(address))
        if refusal is not None:
            raise EgressRefused(refusal)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Pinned(parts.scheme, host, port, target, addresses)
