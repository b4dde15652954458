"""Limits on failed share-password guesses: per client address first, then a per-link ceiling."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from server.errors import ResourceExhausted
from storage.db import Database
from storage.models import ShareUnlockFailure

# An IPv6 client is limited by its /64: one host usually holds a whole /64, and counting each of
# its 2^64 addresses apart would let one attacker reach the per-link ceiling alone.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class UnlockLimits:
    """How many failed guesses a client address, and a link from all addresses, may make per window."""

    window: dt.timedelta = dt.timedelta(minutes=5)
    per_address: int = 10
    per_link: int = 100


def client_address(peer: str) -> str:
    """The address a gRPC peer is limited by: an IPv4 host, or an IPv6 /64 (IPv4-mapped ones as IPv4).

    'ipv4:1.2.3.4:5678' → 'ipv4:1.2.3.4'; 'ipv6:[2001:db8::1]:5678' → 'ipv6:2001:db8::/64'.
    Anything else (a unix socket, an unparsable peer) is its own address, as given.
    """
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("ipv4", "ipv6"):
        return peer
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return peer
    try:
        # gRPC brackets an IPv6 host once; a scope (%25eth0) is left out, so it never splits a /64.
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]").partition("%")[0])
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ipv4:{address.ipv4_mapped}"
        return f"ipv6:{ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False)}"
    return f"ipv4:{address}"


def retry_after(times: Sequence[dt.datetime], limit: int, window: dt.timedelta, now: dt.datetime) -> float:
    """Seconds until fewer than `limit` of the failures at `times` (any order) are inside the window."""
    if len(times) < limit:
        return 0.0
    # One more attempt is allowed once all but limit-1 of them have left the window.
    leaving = sorted(times)[len(times) - limit]
    return max((leaving + window - now).total_seconds(), 0.0)


def _digest(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


class UnlockLimiter:
    """Failed unlock attempts in the metadata database: shared by replicas and kept across restarts.

    An attempt is recorded before its password is checked (so concurrent guesses cannot slip past
    a limit) and refused, leaving no row, when its address or its link is over the limit. A success
    forgets that address's failures on that link only: a caller who knows the password of a link
    of their own must not clear what they guessed at someone else's.
    """

    def __init__(self, db: Database, clock: Callable[[], dt.datetime], limits: UnlockLimits | None = None):
        self.db = db
        self.clock = clock
        self.limits = limits or UnlockLimits()

    def check_address(self, address: str) -> None:
        """Refuses an address over its limit, whatever link it tries (no row is written)."""
        now = self.clock()
        with self.db.session() as session:
            times = self._times(session, ShareUnlockFailure.client == _digest(address), now)
        if len(times) >= self.limits.per_address:
            raise self._refusal("from this address", times, self.limits.per_address, now)

    def begin(self, configuration_id: int, address: str) -> None:
        """Counts an attempt on a link as failed, or refuses it when the address or the link is over."""
        now = self.clock()
        client = _digest(address)
        with self.db.session() as session:
            # Counters last exactly the window: older rows are gone for good.
            expired = ShareUnlockFailure.at <= now - self.limits.window
            session.execute(delete(ShareUnlockFailure).where(expired))
            row = ShareUnlockFailure(sharing_configuration_id=configuration_id, client=client, at=now)
            session.add(row)
            session.flush()
            attempt = row.id
        # Counted after the commit, every concurrent attempt included: a race refuses both, never
        # lets both through.
        with self.db.session() as session:
            others = ShareUnlockFailure.id != attempt
            by_address = self._times(session, (ShareUnlockFailure.client == client) & others, now)
            by_link = self._times(
                session, (ShareUnlockFailure.sharing_configuration_id == configuration_id) & others, now
            )
            refusal: ResourceExhausted | None = None
            if len(by_address) >= self.limits.per_address:
                refusal = self._refusal("from this address", by_address, self.limits.per_address, now)
            elif len(by_link) >= self.limits.per_link:
                refusal = self._refusal("on this link", by_link, self.limits.per_link, now)
            if refusal is not None:
                session.execute(delete(ShareUnlockFailure).where(ShareUnlockFailure.id == attempt))
        if refusal is not None:
            raise refusal

    def succeeded(self, configuration_id: int, address: str) -> None:
        """Forgets the address's failures on this link (the attempt counted by begin() included)."""
        with self.db.session() as session:
            session.execute(
                delete(ShareUnlockFailure).where(
                    ShareUnlockFailure.sharing_configuration_id == configuration_id,
                    ShareUnlockFailure.client == _digest(address),
                )
            )

    def clear(self) -> None:
        """Forgets every failure (operators, and tests that moved the clock)."""
        with self.db.session() as session:
            session.execute(delete(ShareUnlockFailure))

    def _times(self, session: Session, condition: ColumnElement[bool], now: dt.datetime) -> list[dt.datetime]:
        """Times of the failures matching `condition` inside the window."""
        query = select(ShareUnlockFailure.at).where(condition, ShareUnlockFailure.at > now - self.limits.window)
        return list(session.scalars(query))

    def _refusal(
        self, where: str, times: list[dt.datetime], limit: int, now: dt.datetime
    ) -> ResourceExhausted:
        seconds = max(math.ceil(retry_after(times, limit, self.limits.window, now)), 1)
        return ResourceExhausted(
            f"too many failed unlock attempts {where}; retry in {seconds} s",
            reason="TOO_MANY_UNLOCK_ATTEMPTS",
            metadata={"retry_after_seconds": str(seconds), "limited": where.split()[-1]},
            retry_after=float(seconds),
        )
