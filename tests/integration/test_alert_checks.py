"""Alert evaluation through the real server: CheckAlertNow, webhooks, auto-disable, the scheduler."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy import update

from generated.insights.v1 import alerts_pb2 as apb
from server.alerts.scheduler import Scheduler
from storage.events import EventRow
from storage.models import AlertConfiguration
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, expect_error, trends_viz
from tests.integration.test_alerts import Alerts, bounds

UTC = dt.UTC


class Receiver:
    """A webhook receiver on loopback: records JSON bodies, answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.bodies.append(body)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        r.thread.join(timeout=5)


@pytest.fixture
def owner(api: Api) -> Api:
    return api


@pytest.fixture
def alerts(server: Server, tenant: Tenant) -> Alerts:
    from generated.insights.v1 import alerts_pb2_grpc as agrpc
    from tests.integration.itkit import bearer

    return Alerts(
        agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write"))
    )


@pytest.fixture(autouse=True)
def fast_retries(server: Server) -> Iterator[None]:
    notifier = server.app.checker.notifier
    before = notifier.backoff
    notifier.backoff = 0.05
    yield
    notifier.backoff = before


def pageviews(server: Server, environment_id: int, count: int) -> None:
    """`count` pageviews yesterday at noon UTC (the last complete day of a daily trend)."""
    when = dt.datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    server.app.events.insert_events(
        EventRow(environment_id, uuid.uuid4(), "$pageview", f"d{i}", uuid.uuid4(), when, "{}", "{}")
        for i in range(count)
    )


async def check_now(alerts: Alerts, alert_id: str) -> apb.AlertCheck:
    request = apb.CheckAlertNowRequest(environment_id=alerts.env, alert_id=alert_id)
    return await alerts.stub.CheckAlertNow(request, metadata=alerts.md, timeout=30)


async def test_firing_alert_records_and_notifies_once(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(upper=3), webhook_url=receiver.url)
    assert alert.webhook_url == receiver.url

    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 5
    assert check.HasField("notification_sent_at")
    assert json_format.MessageToDict(check.targets_notified) == {"webhooks": [receiver.url], "failed": []}
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["alert_id"] == alert.id and body["insight_id"] == insight.id and body["value"] == 5
    assert body["insight_short_id"] == insight.short_id and body["check_id"] == check.id
    assert body["state"] == "Firing" and "above the upper threshold" in body["breaches"][0]

    fetched = await alerts.get(alert.id)
    assert fetched.state == apb.ALERT_STATE_FIRING and fetched.last_value == 5
    assert fetched.HasField("last_notified_at") and fetched.HasField("last_checked_at")
    assert fetched.checks_total == 1 and fetched.checks[0].id == check.id

    # Firing again within the same (daily) interval after a notified check: recorded, not re-sent.
    again = await check_now(alerts, alert.id)
    assert again.state == apb.ALERT_STATE_FIRING and not again.HasField("notification_sent_at")
    assert len(receiver.bodies) == 1
    # Delivering the first check again is idempotent: its target is already notified.
    await server.app.checker.deliver(check.id)
    assert len(receiver.bodies) == 1


async def test_webhook_retries_once_after_a_500(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(upper=3), webhook_url=receiver.url)
    receiver.statuses = [500]
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.HasField("notification_sent_at")
    assert len(receiver.bodies) == 2 and receiver.bodies[0] == receiver.bodies[1]


async def test_not_breaching_records_not_firing_and_sends_nothing(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(lower=1, upper=100), webhook_url=receiver.url)
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and check.calculated_value == 5
    assert not check.HasField("targets_notified") and receiver.bodies == []
    fetched = await alerts.get(alert.id)
    assert fetched.state == apb.ALERT_STATE_NOT_FIRING and not fetched.HasField("last_notified_at")


async def test_invalid_config_auto_disables(owner: Api, alerts: Alerts, receiver: Receiver) -> None:
    two = trends_viz()
    two.insight_viz_node.source.trends_query.series.add().events_node.event = "signup"
    insight = await owner.create(name="Two", query=two)
    alert = await alerts.create(
        insight.id, config=apb.TrendsAlertConfig(series_index=1), webhook_url=receiver.url
    )
    # The insight loses its second series: series_index 1 is out of range now.
    await owner.update(insight.id, ["query"], query=trends_viz())
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_ERRORED
    assert check.error["reason"] == "invalid_config" and "series_index" in check.error["message"]
    fetched = await alerts.get(alert.id)
    assert not fetched.enabled and fetched.state == apb.ALERT_STATE_ERRORED
    assert receiver.bodies == []


async def test_webhook_url_validation(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    for bad in ("ftp://example.com/x", "not a url", "http://", "https://user:pw@example.com/"):
        err = await expect_error(alerts.create(insight.id, webhook_url=bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "alert.webhook_url")
    alert = await alerts.create(insight.id)
    updated = await alerts.update(alert.id, ["webhook_url"], webhook_url="https://example.com/hook")
    assert updated.webhook_url == "https://example.com/hook"


async def test_check_alert_now_of_another_environment_is_not_found(
    owner: Api, alerts: Alerts, make_tenant: Any
) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id)
    stranger = make_tenant()
    from tests.integration.itkit import bearer

    theirs = Alerts(alerts.stub, stranger.environment_id, bearer(stranger.key("alert:write")))
    await expect_error(check_now(theirs, alert.id), grpc.StatusCode.NOT_FOUND)


def _set(server: Server, alert_id: str, **values: Any) -> None:
    with server.db.session() as session:
        session.execute(update(AlertConfiguration).where(AlertConfiguration.id == alert_id).values(**values))


def _row(server: Server, alert_id: str) -> AlertConfiguration:
    with server.db.session() as session:
        row = session.get(AlertConfiguration, alert_id)
        assert row is not None
        return row


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


async def test_scheduler_checks_only_due_alerts(server: Server, owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    # A controllable clock in the past: only the alerts moved before it are due (no other test's).
    now = dt.datetime(2020, 1, 4, 12, 0, tzinfo=UTC)  # a Saturday
    past = dt.datetime(2020, 1, 1, tzinfo=UTC)
    due = await alerts.create(insight.id, name="due", threshold=bounds(upper=1000))
    later = await alerts.create(insight.id, name="later")
    weekend = await alerts.create(insight.id, name="weekend", skip_weekend=True)
    blocked = await alerts.create(
        insight.id,
        name="blocked",
        schedule_restriction=apb.ScheduleRestriction(
            blocked_windows=[apb.BlockedWindow(start="11:00", end="13:00")]
        ),
    )
    disabled = await alerts.create(insight.id, name="disabled", enabled=False)
    snoozed = await alerts.create(insight.id, name="snoozed", snoozed_until="2d")
    for a in (due, weekend, blocked, disabled, snoozed):
        _set(server, a.id, next_check_at=past)
    _set(server, later.id, next_check_at=now + dt.timedelta(hours=1))

    result = await server.app.scheduler.run_once(now)
    assert result.checked == [due.id] and not result.failed
    assert sorted(result.rescheduled) == sorted([weekend.id, blocked.id, snoozed.id])

    checked = await alerts.get(due.id)
    assert checked.checks_total == 1 and checked.checks[0].state == apb.ALERT_STATE_NOT_FIRING
    assert checked.next_check_at.ToDatetime(tzinfo=UTC).date() == dt.date(2020, 1, 5)
    assert checked.next_check_at.ToDatetime(tzinfo=UTC).hour == 1
    assert _utc(_row(server, later.id).next_check_at) == now + dt.timedelta(hours=1)
    assert _utc(_row(server, weekend.id).next_check_at) == dt.datetime(2020, 1, 6, 12, 0, tzinfo=UTC)
    assert _utc(_row(server, blocked.id).next_check_at) == dt.datetime(2020, 1, 4, 13, 0, tzinfo=UTC)
    assert _utc(_row(server, disabled.id).next_check_at) == past
    snoozed_row = _row(server, snoozed.id)
    assert _utc(snoozed_row.next_check_at) == _utc(snoozed_row.snoozed_until)
    for a in (later, weekend, blocked, disabled):
        assert (await alerts.get(a.id)).checks_total == 0

    # A second pass at the same instant finds nothing due any more.
    again = await server.app.scheduler.run_once(now)
    assert again.checked == [] and again.rescheduled == []


async def test_scheduler_task_starts_and_stops(server: Server) -> None:
    scheduler = Scheduler(server.app.db, server.app.checker, poll_seconds=0.01, batch=0)
    scheduler.start()
    await asyncio.sleep(0.05)
    assert scheduler.running
    await asyncio.wait_for(scheduler.stop(), timeout=5)
    assert not scheduler.running
