"""Notifications of firing alerts: the Notifier protocol and a webhook notifier.

A notifier delivers one `Notification` to one target and reports whether it was delivered. The
checker (server.domain.alerts.checker) decides *whether* to notify and records which targets were
notified on the check (`targets_notified`), so delivering a check again only reaches the targets
that have not been notified yet.

WebhookNotifier: an HTTP POST of the notification as a JSON object (`Notification.body()`), with
`Content-Type: application/json` and `User-Agent: insights-alerts/1`, using http.client from the
standard library in the blocking pool. Each attempt has a timeout (default 5 s); a network error, a
timeout, 408, 429 or a 5xx answer is retried with exponential backoff (default 3 attempts, 0.5 s,
then 1 s); any other non-2xx answer is final. Redirects are not followed (a 3xx is a failure).

Each attempt resolves the host once through the egress policy (server.domain.alerts.egress) and connects
to the checked addresses only, sending the original Host header and verifying TLS against the
host name; a target the policy refuses is a final failure without a connection. Environment proxy
variables are not used: a proxy would connect to whatever the policy had not checked.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from server.domain.alerts.egress import EgressPolicy, EgressRefused, Pinned, Resolver, pin, system_resolve

log = logging.getLogger("insights.alerts.notify")

T = TypeVar("T")
RunBlocking = Callable[..., Awaitable[Any]]
RETRYABLE = frozenset({408, 429})


@dataclass(frozen=True)
class Notification:
    """What a firing check tells its targets."""

    environment_id: int
    alert_id: str
    alert_name: str
    insight_id: int
    insight_short_id: str
    insight_name: str
    check_id: str
    state: str
    value: float | None
    breaches: list[str] = field(default_factory=list)
    checked_at: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = "$insight_alert_firing"
        return data


@dataclass(frozen=True)
class Delivery:
    """The outcome of delivering to one target.

    `error` is for the server's log only: it tells a refused address from a closed port or a
    timeout, which a tenant must not learn about internal hosts (checks record delivered/failed).
    """

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class Notifier(Protocol):
    """Delivers a notification to one target (e.g. a webhook URL)."""

    async def deliver(self, target: str, notification: Notification) -> Delivery: ...


@dataclass(frozen=True)
class Egress:
    """Where webhooks may connect (the policy), how hosts are resolved, and TLS trust."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    resolve: Resolver = system_resolve
    # None: the system's trust store (ssl.create_default_context()); tests pass their own CA.
    tls: ssl.SSLContext | None = None


@functools.cache
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _connect(addresses: tuple[str, ...], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to `host` (Host header) over a connection to one of the checked addresses."""

    def __init__(self, pinned: Pinned, timeout: float):
        super().__init__(pinned.host, pinned.port, timeout=timeout)
        self._addresses = pinned.addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `host` (Host header, SNI and certificate) over a connection to a checked address."""

    def __init__(self, pinned: Pinned, timeout: float, tls: ssl.SSLContext):
        super().__init__(pinned.host, pinned.port, timeout=timeout, context=tls)
        self._addresses = pinned.addresses
        self._tls = tls

    def connect(self) -> None:
        sock = _connect(self._addresses, self.port, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def pinned_connection(pinned: Pinned, timeout: float, tls: ssl.SSLContext | None) -> http.client.HTTPConnection:
    """An HTTP(S) connection (not yet open) to `pinned`'s host that connects only to its checked
    addresses; `tls` None trusts the system store."""
    if pinned.scheme == "https":
        return _PinnedHTTPS(pinned, timeout, tls or _default_tls())
    return _PinnedHTTP(pinned, timeout)


def post_json(url: str, body: dict[str, Any], timeout: float, egress: Egress) -> int:
    """POSTs `body` as JSON to a target the policy admits; returns the HTTP status.

    Raises EgressRefused (no connection made) or OSError / http.client.HTTPException.
    """
    data = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str).encode()
    pinned = pin(url, egress.policy, egress.resolve)
    connection = pinned_connection(pinned, timeout, egress.tls)
    try:
        connection.request(
            "POST",
            pinned.target,
            body=data,
            headers={"Content-Type": "application/json", "User-Agent": "insights-alerts/1"},
        )
        response = connection.getresponse()
        response.read(65536)
        return int(response.status)
    finally:
        connection.close()


def _finite(value: float | None) -> float | str | None:
    if value is None or (value == value and abs(value) != float("inf")):
        return value
    return str(value)


class WebhookNotifier:
    """POSTs notifications to webhook URLs with a timeout and bounded retries with backoff."""

    def __init__(
        self,
        run_blocking: RunBlocking,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        egress: Egress | None = None,
    ):
        self._run = run_blocking
        self.egress = egress or Egress()
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep

    async def deliver(self, target: str, notification: Notification) -> Delivery:
        body = notification.body()
        body["value"] = _finite(notification.value)
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                status = await self._run(post_json, target, body, self.timeout, self.egress)
                error = None
            except EgressRefused as exc:
                # Not retried: the same answer would come back. Logged without the URL (its path
                # may hold a secret token).
                log.warning("webhook for alert %s not sent: %s", notification.alert_id, exc)
                return Delivery(False, attempt, None, str(exc))
            except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, refusals
                status, error = None, f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                return Delivery(True, attempt, status)
            retryable = status is None or status >= 500 or status in RETRYABLE
            if not retryable or attempt == self.attempts:
                break
            await self._sleep(self.backoff * 2 ** (attempt - 1))
        log.warning(
            "webhook for alert %s failed after %d attempt(s): %s",
            notification.alert_id,
            attempt,
            error or f"HTTP {status}",
        )
        return Delivery(False, attempt, status, error or f"HTTP {status}")
