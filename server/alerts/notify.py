"""Notifications of firing alerts: the Notifier protocol and a webhook notifier.

A notifier delivers one `Notification` to one target and reports whether it was delivered. The
checker (server.alerts.checker) decides *whether* to notify and records which targets were
notified on the check (`targets_notified`), so delivering a check again only reaches the targets
that have not been notified yet.

WebhookNotifier: an HTTP POST of the notification as a JSON object (`Notification.body()`), with
`Content-Type: application/json` and `User-Agent: insights-alerts/1`, using urllib from the
standard library in the blocking pool. Each attempt has a timeout (default 5 s); a network error, a
timeout, 408, 429 or a 5xx answer is retried with exponential backoff (default 3 attempts, 0.5 s,
then 1 s); any other non-2xx answer is final. Redirects are not followed (a 3xx is a failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

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
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class Notifier(Protocol):
    """Delivers a notification to one target (e.g. a webhook URL)."""

    async def deliver(self, target: str, notification: Notification) -> Delivery: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: dict[str, Any], timeout: float) -> int:
    """POSTs `body` as JSON; returns the HTTP status (errors of HTTP are statuses, not exceptions)."""
    data = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "insights-alerts/1"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


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
    ):
        self._run = run_blocking
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
                status = await self._run(post_json, target, body, self.timeout)
                error = None
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
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
