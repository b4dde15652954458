"""WebhookNotifier with a fake sender (no network), and the same-interval rule's interval_start."""

from __future__ import annotations

import datetime as dt
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from server.domain.alerts.checker import interval_start
from server.domain.alerts.egress import EgressPolicy, EgressRefused
from server.domain.alerts.notify import Egress, Notification, WebhookNotifier, post_json

UTC = dt.UTC


def notification(value: float | None = 5.0) -> Notification:
    return Notification(
        environment_id=7,
        alert_id="a-1",
        alert_name="Too many pageviews",
        insight_id=42,
        insight_short_id="abc123",
        insight_name="Views",
        check_id="c-1",
        state="Firing",
        value=value,
        breaches=["The insight value (5) is above the upper threshold (3)"],
        checked_at="2024-03-01T12:00:00Z",
    )


class FakeSender:
    """Stands in for the blocking pool: answers the queued statuses / raises the queued errors."""

    def __init__(self, *answers: int | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Callable[..., Any], str, dict[str, Any], float]] = []
        self.egress: list[Egress] = []
        self.sleeps: list[float] = []

    async def run(
        self, fn: Callable[..., Any], url: str, body: dict[str, Any], timeout: float, egress: Egress
    ) -> int:
        self.calls.append((fn, url, body, timeout))
        self.egress.append(egress)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def notifier(self, **kw: Any) -> WebhookNotifier:
        return WebhookNotifier(self.run, sleep=self.sleep, **kw)


URL = "http://127.0.0.1:9/hook"


async def test_delivers_on_first_2xx_with_the_json_body() -> None:
    sender = FakeSender(204)
    result = await sender.notifier(timeout=2.5).deliver(URL, notification())
    assert result.delivered and result.attempts == 1 and result.status == 204 and result.error is None
    assert sender.sleeps == []
    ((fn, url, body, timeout),) = sender.calls
    assert fn is post_json and url == URL and timeout == 2.5
    assert body == {
        "event": "$insight_alert_firing",
        "environment_id": 7,
        "alert_id": "a-1",
        "alert_name": "Too many pageviews",
        "insight_id": 42,
        "insight_short_id": "abc123",
        "insight_name": "Views",
        "check_id": "c-1",
        "state": "Firing",
        "value": 5.0,
        "breaches": ["The insight value (5) is above the upper threshold (3)"],
        "checked_at": "2024-03-01T12:00:00Z",
    }


@pytest.mark.parametrize(
    "first",
    [
        500,
        502,
        503,
        408,
        429,
        ConnectionRefusedError("refused"),
        urllib.error.URLError("down"),
        TimeoutError(),
    ],
)
async def test_retries_network_errors_408_429_and_5xx(first: int | BaseException) -> None:
    sender = FakeSender(first, 200)
    result = await sender.notifier(backoff=0.5).deliver(URL, notification())
    assert result.delivered and result.attempts == 2 and result.status == 200
    assert len(sender.calls) == 2 and sender.sleeps == [0.5]
    assert sender.calls[0][2] == sender.calls[1][2]  # the same body each attempt


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 301, 302])
async def test_other_answers_are_final(status: int) -> None:
    sender = FakeSender(status, 200)
    result = await sender.notifier().deliver(URL, notification())
    assert not result.delivered and result.attempts == 1 and result.status == status
    assert result.error == f"HTTP {status}"
    assert len(sender.calls) == 1 and sender.sleeps == []


async def test_attempts_are_bounded_with_exponential_backoff() -> None:
    sender = FakeSender(*([503] * 10))
    result = await sender.notifier(attempts=3, backoff=0.5).deliver(URL, notification())
    assert not result.delivered and result.attempts == 3 and result.status == 503
    assert len(sender.calls) == 3 and sender.sleeps == [0.5, 1.0]

    errors = FakeSender(*[OSError("unreachable") for _ in range(10)])
    failed = await errors.notifier(attempts=4, backoff=0.1).deliver(URL, notification())
    assert not failed.delivered and failed.attempts == 4 and failed.status is None
    assert failed.error is not None and "OSError" in failed.error
    assert len(errors.calls) == 4 and errors.sleeps == pytest.approx([0.1, 0.2, 0.4])


async def test_a_target_refused_by_the_egress_policy_is_final() -> None:
    sender = FakeSender(EgressRefused("loopback"), 200)
    egress = Egress(EgressPolicy.parse("10.0.0.0/8"))
    result = await sender.notifier(egress=egress).deliver(URL, notification())
    assert not result.delivered and result.attempts == 1 and result.status is None
    assert len(sender.calls) == 1 and sender.sleeps == [] and sender.egress == [egress]


async def test_at_least_one_attempt() -> None:
    sender = FakeSender(500)
    result = await sender.notifier(attempts=0).deliver(URL, notification())
    assert not result.delivered and result.attempts == 1 and sender.sleeps == []


@pytest.mark.parametrize(
    ("value", "sent"), [(float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan"), (None, None)]
)
async def test_non_finite_values_are_sent_as_text(value: float | None, sent: str | None) -> None:
    sender = FakeSender(200)
    await sender.notifier().deliver(URL, notification(value))
    assert sender.calls[0][2]["value"] == sent


# ------------------------------------------------------------- the same-interval notification rule


def test_interval_start_hourly_daily_weekly_monthly_utc() -> None:
    moment = dt.datetime(2024, 3, 14, 15, 47, 12, tzinfo=UTC)  # a Thursday
    assert interval_start("hourly", moment, "UTC") == dt.datetime(2024, 3, 14, 15, tzinfo=UTC)
    assert interval_start("daily", moment, "UTC") == dt.datetime(2024, 3, 14, tzinfo=UTC)
    assert interval_start("weekly", moment, "UTC") == dt.datetime(2024, 3, 11, tzinfo=UTC)  # Monday
    assert interval_start("monthly", moment, "UTC") == dt.datetime(2024, 3, 1, tzinfo=UTC)


def test_same_interval_follows_the_environment_time_zone() -> None:
    zone = "America/New_York"
    # Both on 2024-03-13 in UTC; in New York (EDT, UTC-4) 03:30 UTC is 23:30 on the 12th and
    # 05:30 UTC is 01:30 on the 13th: different days of the environment.
    late = dt.datetime(2024, 3, 13, 3, 30, tzinfo=UTC)
    early = dt.datetime(2024, 3, 13, 5, 30, tzinfo=UTC)
    assert interval_start("daily", late, "UTC") == interval_start("daily", early, "UTC")
    assert interval_start("daily", late, zone) != interval_start("daily", early, zone)
    # Across the spring-forward day (2024-03-10) the local day still starts at local midnight.
    start = interval_start("daily", dt.datetime(2024, 3, 10, 12, tzinfo=UTC), zone)
    assert start.replace(tzinfo=None) == dt.datetime(2024, 3, 10) and start.utcoffset() == dt.timedelta(
        hours=-5
    )


def test_same_interval_boundaries() -> None:
    def same(interval: str, a: dt.datetime, b: dt.datetime) -> bool:
        return interval_start(interval, a, "UTC") == interval_start(interval, b, "UTC")

    t = dt.datetime(2024, 3, 17, 23, 59, tzinfo=UTC)  # a Sunday
    assert same("hourly", t, t.replace(minute=0)) and not same("hourly", t, t + dt.timedelta(minutes=1))
    assert not same("daily", t, t + dt.timedelta(minutes=1))
    assert same("weekly", t, dt.datetime(2024, 3, 11, tzinfo=UTC))  # Monday to Sunday
    assert not same("weekly", t, t + dt.timedelta(minutes=1))  # Monday 00:00 starts a new week
    assert same("monthly", dt.datetime(2024, 3, 1, tzinfo=UTC), dt.datetime(2024, 3, 31, 23, tzinfo=UTC))
    assert not same("monthly", dt.datetime(2024, 2, 29, 23, tzinfo=UTC), dt.datetime(2024, 3, 1, tzinfo=UTC))
