"""Alert evaluation through the real server: CheckAlertNow, webhooks, auto-disable, the scheduler."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy import select, update

from generated.insights.v1 import alerts_pb2 as apb
from server.domain.alerts.checker import Checker
from server.domain.alerts.scheduler import Scheduler
from storage.events import EventRow
from storage.models import AlertCheck, AlertConfiguration
from tests.integration.engineprobe import eventually
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
    # Two passes: the loop started, finished a pass and went on to the next one.
    await eventually(lambda: scheduler.passes >= 2, what="two passes of the scheduler's loop")
    assert scheduler.running
    await asyncio.wait_for(scheduler.stop(), timeout=5)
    assert not scheduler.running


# --------------------------------------------------------------------------- retention, ordering


def _add_checks(server: Server, alert_id: str, *created: dt.datetime) -> list[str]:
    with server.db.session() as session:
        rows = [
            AlertCheck(alert_id=alert_id, created_at=c, state="Not firing", condition={}) for c in created
        ]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def _check_ids(server: Server, alert_id: str) -> set[str]:
    with server.db.session() as session:
        return set(session.scalars(select(AlertCheck.id).where(AlertCheck.alert_id == alert_id)))


async def test_scheduler_removes_checks_older_than_14_days(
    server: Server, owner: Api, alerts: Alerts
) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    day = dt.timedelta(days=1)
    second = dt.timedelta(seconds=1)
    old = _add_checks(server, alert.id, now - 30 * day, now - 14 * day - second)
    young = _add_checks(
        server, alert.id, now - 14 * day + second, now - 13 * day, now - dt.timedelta(hours=1)
    )
    # batch=0 claims no alert: the pass only applies retention, at the controlled instant.
    scheduler = Scheduler(server.app.db, server.app.checker, batch=0, poll_seconds=0)
    result = await scheduler.run_once(now)
    assert result.checked == [] and result.removed_checks >= len(old)
    assert _check_ids(server, alert.id) == set(young)
    assert (await alerts.get(alert.id)).checks_total == len(young)


class RecordingChecker(Checker):
    """The real checker, recording the order in which the scheduler hands it alerts."""

    seen: list[str]

    async def check(self, alert_id: str, **kw: Any) -> Any:
        self.seen.append(alert_id)
        return await super().check(alert_id, **kw)


async def test_scheduler_checks_hourly_alerts_first(server: Server, owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    now = dt.datetime(2019, 6, 5, 12, 0, tzinfo=UTC)  # a Wednesday, before any other test's instants
    iv = apb.AlertCalculationInterval
    made: dict[str, apb.Alert] = {}
    # Created (and due) in an order unlike the expected one: the interval outranks next_check_at.
    for name, interval, due_hours_ago in [
        ("monthly", iv.ALERT_CALCULATION_INTERVAL_MONTHLY, 50),
        ("weekly", iv.ALERT_CALCULATION_INTERVAL_WEEKLY, 40),
        ("daily-late", iv.ALERT_CALCULATION_INTERVAL_DAILY, 3),
        ("daily-early", iv.ALERT_CALCULATION_INTERVAL_DAILY, 30),
        ("hourly", iv.ALERT_CALCULATION_INTERVAL_HOURLY, 1),
    ]:
        made[name] = await alerts.create(insight.id, name=name, calculation_interval=interval)
        _set(server, made[name].id, next_check_at=now - dt.timedelta(hours=due_hours_ago))
    names = {a.id: n for n, a in made.items()}
    real = server.app.checker
    checker = RecordingChecker(real.db, real.execution, real.blocking, real.notifier)
    checker.seen = []
    scheduler = Scheduler(server.app.db, checker, concurrency=1, batch=2, poll_seconds=0)
    try:
        first = await scheduler.run_once(now)
        # batch=2: the claim itself is ordered (hourly, then daily by next_check_at).
        assert [names[i] for i in first.checked if i in names] == ["hourly", "daily-early"]
        scheduler.batch = 100
        second = await scheduler.run_once(now)
        assert [names[i] for i in second.checked if i in names] == ["daily-late", "monthly", "weekly"]
        assert [names[i] for i in checker.seen if i in names] == [
            "hourly",
            "daily-early",
            "daily-late",
            "monthly",
            "weekly",
        ]
    finally:
        for a in made.values():  # leave nothing due at other tests' past instants
            await alerts.delete(a.id)


# ------------------------------------------------------------------------------------ detectors


def daily_events(server: Server, environment_id: int, event: str, counts: list[int]) -> None:
    """counts[-1] events yesterday at noon UTC, counts[-2] the day before, and so on."""
    noon = dt.datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rows = []
    for back, count in enumerate(reversed(counts), start=1):
        when = noon - dt.timedelta(days=back)
        rows += [
            EventRow(environment_id, uuid.uuid4(), event, f"d{back}-{i}", uuid.uuid4(), when, "{}", "{}")
            for i in range(count)
        ]
    server.app.events.insert_events(rows)


async def test_zscore_detector_fires_on_a_planted_spike_and_not_on_a_flat_trend(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    history = [10 + i % 3 for i in range(35)]  # 10, 11, 12, 10, ... : small noise, no trend
    daily_events(server, tenant.environment_id, "spiky", [*history, 60])
    daily_events(server, tenant.environment_id, "flat", [*history, 11])
    detector = apb.DetectorConfig(
        type=apb.DETECTOR_TYPE_ZSCORE, window=30, threshold=0.99, direction=apb.DETECTOR_DIRECTION_UP
    )
    spiky = await owner.create(name="Spiky", query=trends_viz("spiky"))
    flat = await owner.create(name="Flat", query=trends_viz("flat"))
    # The threshold's bounds would fire on both (values above 5): the detector decides instead.
    fires = await alerts.create(
        spiky.id, threshold=bounds(upper=5), detector_config=detector, webhook_url=receiver.url
    )
    quiet = await alerts.create(
        flat.id, threshold=bounds(upper=5), detector_config=detector, webhook_url=receiver.url
    )

    check = await check_now(alerts, fires.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 60
    anchor = len(check.anomaly_scores) - 2  # yesterday: the last complete day (today is ongoing)
    assert anchor >= 31 and anchor in check.triggered_points
    assert check.anomaly_scores[anchor] >= 0.99
    # Points without a full training window are unscored: NaN keeps the scores aligned.
    assert math.isnan(check.anomaly_scores[0]) and not math.isnan(check.anomaly_scores[anchor - 1])
    yesterday = (dt.datetime.now(UTC) - dt.timedelta(days=1)).date().isoformat()
    assert any(d.startswith(yesterday) for d in check.triggered_dates)
    assert check.triggered_metadata["breaches"] and "anomalous" in check.triggered_metadata["breaches"][0]
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["check_id"] == check.id
    assert (await alerts.get(fires.id)).state == apb.ALERT_STATE_FIRING

    calm = await check_now(alerts, quiet.id)
    assert calm.state == apb.ALERT_STATE_NOT_FIRING and not calm.error
    assert len(calm.anomaly_scores) == len(check.anomaly_scores)
    assert anchor not in calm.triggered_points
    assert len(receiver.bodies) == 1


async def test_notification_rule_same_interval_and_failed_deliveries(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(upper=3), webhook_url=receiver.url)
    now = dt.datetime.now(UTC)

    # A firing check notified in the previous (daily) interval does not hold back today's.
    earlier = await server.app.checker.check(alert.id, now=now - dt.timedelta(days=1))
    assert earlier.state == "Firing" and earlier.notification_sent_at is not None
    assert len(receiver.bodies) == 1
    today = await check_now(alerts, alert.id)
    assert today.HasField("notification_sent_at") and len(receiver.bodies) == 2
    # ...but holds back another firing check of the same interval.
    again = await check_now(alerts, alert.id)
    assert again.state == apb.ALERT_STATE_FIRING and not again.HasField("notification_sent_at")
    assert len(receiver.bodies) == 2


async def test_a_failed_delivery_does_not_hold_back_the_next_check(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(upper=3), webhook_url=receiver.url)
    receiver.statuses = [400]  # final: not retried
    failed = await check_now(alerts, alert.id)
    assert failed.state == apb.ALERT_STATE_FIRING and not failed.HasField("notification_sent_at")
    assert json_format.MessageToDict(failed.targets_notified) == {"webhooks": [], "failed": [receiver.url]}
    assert len(receiver.bodies) == 1
    assert not (await alerts.get(alert.id)).HasField("last_notified_at")
    # The previous check fired but was not notified: the next firing check in the interval notifies.
    retried = await check_now(alerts, alert.id)
    assert retried.HasField("notification_sent_at") and len(receiver.bodies) == 2
    # Delivering the failed check again now reaches its target (not yet in targets_notified).
    redelivered = await server.app.checker.deliver(failed.id)
    assert redelivered.targets_notified == {"webhooks": [receiver.url], "failed": []}
    assert len(receiver.bodies) == 3


async def test_overlapping_checks_of_one_alert_notify_once(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    """A manual check arriving while another check of the same alert runs waits for it, then sees
    that the interval was already notified (the scheduler goes through the same checker)."""
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id, threshold=bounds(upper=3), webhook_url=receiver.url)
    checks = await asyncio.gather(*(check_now(alerts, alert.id) for _ in range(4)))
    assert all(c.state == apb.ALERT_STATE_FIRING for c in checks)
    assert sum(c.HasField("notification_sent_at") for c in checks) == 1
    assert len(receiver.bodies) == 1
