"""Alert webhooks and the SSRF policy through the real server: internal targets refused, the allowlist.

The suite's server admits 127.0.0.1/32 (INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS, see itkit), as an
operator would for a local receiver; `default_policy` puts the server back to the default (empty)
allowlist for the tests about what it refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy import update

from generated.insights.v1 import alerts_pb2 as apb
from server.domain.alerts.egress import EgressPolicy
from server.domain.alerts.notify import Egress
from storage.models import AlertConfiguration
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, error_info, expect_error, free_port
from tests.integration.itkit import trends_viz as views
from tests.integration.test_alert_checks import check_now, pageviews
from tests.integration.test_alerts import Alerts, bounds
from tests.integration.webhookkit import Receiver, receiving

# Every spelling of an internal target a tenant could save, with the field named in the refusal.
INTERNAL_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://api.localhost/hook",
    "http://127.1/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
    "http://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "http://192.168.1.1:22/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0:5432/",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
]


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


def _policy(server: Server, policy: EgressPolicy) -> tuple[EgressPolicy, Egress]:
    """Sets the server's allowlist for saving and sending; returns the previous settings."""
    domain, notifier = server.app.alerts, server.app.checker.notifier
    before = domain.webhook_policy, notifier.egress
    domain.webhook_policy = policy
    notifier.egress = Egress(policy)
    return before


@pytest.fixture
def default_policy(server: Server) -> Iterator[None]:
    saved, egress = _policy(server, EgressPolicy())
    try:
        yield
    finally:
        server.app.alerts.webhook_policy, server.app.checker.notifier.egress = saved, egress


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def _set_url(server: Server, alert_id: str, url: str) -> None:
    """Stores a URL as an alert saved before the policy (or under a wider allowlist) would hold it."""
    with server.db.session() as session:
        session.execute(update(AlertConfiguration).where(AlertConfiguration.id == alert_id).values(webhook_url=url))


async def _firing_alert(server: Server, owner: Api, alerts: Alerts, tenant: Tenant, **fields: Any) -> apb.Alert:
    pageviews(server, tenant.environment_id, 5)
    insight = await owner.create(name="Views", query=views())
    return await alerts.create(insight.id, threshold=bounds(upper=3), **fields)


def _notified(check: apb.AlertCheck) -> dict[str, Any]:
    return json_format.MessageToDict(check.targets_notified)


# ------------------------------------------------------------------------------------ send time


@pytest.mark.usefixtures("default_policy")
async def test_check_alert_now_does_not_reach_loopback_in_any_spelling(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    alert = await _firing_alert(server, owner, alerts, tenant)
    for host in ("127.0.0.1", "localhost", "127.1", "0x7f000001", "2130706433", "[::ffff:127.0.0.1]"):
        url = receiver.url(host)
        _set_url(server, alert.id, url)
        check = await check_now(alerts, alert.id)
        assert check.state == apb.ALERT_STATE_FIRING
        assert _notified(check) == {"webhooks": [], "failed": [url]}, host
        assert not check.HasField("notification_sent_at")
    assert receiver.requests == []


@pytest.mark.usefixtures("default_policy")
async def test_an_open_and_a_closed_internal_port_look_the_same(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    """A tenant cannot map internal ports: what a check records does not depend on the port."""
    alert = await _firing_alert(server, owner, alerts, tenant)
    recorded = []
    for url in (receiver.url(), f"http://127.0.0.1:{free_port()}/hook"):
        _set_url(server, alert.id, url)
        check = await check_now(alerts, alert.id)
        answer = json_format.MessageToDict(check, preserving_proto_field_name=True)
        recorded.append({k: v for k, v in answer.items() if k not in ("id", "created_at", "targets_notified")})
        assert _notified(check) == {"webhooks": [], "failed": [url]}
    assert recorded[0] == recorded[1]
    assert receiver.requests == []


async def test_an_allowlisted_loopback_receiver_is_delivered(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    assert server.app.settings.alert_webhook_allowed_networks == "127.0.0.1/32"
    alert = await _firing_alert(server, owner, alerts, tenant, webhook_url=receiver.url())
    check = await check_now(alerts, alert.id)
    assert _notified(check) == {"webhooks": [receiver.url()], "failed": []}
    assert len(receiver.requests) == 1 and receiver.requests[0].path == "/hook"


async def test_an_allowlisted_host_name_is_delivered(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    saved = _policy(server, EgressPolicy.parse("localhost"))
    try:
        alert = await _firing_alert(server, owner, alerts, tenant, webhook_url=receiver.url("localhost"))
        check = await check_now(alerts, alert.id)
    finally:
        server.app.alerts.webhook_policy, server.app.checker.notifier.egress = saved
    assert _notified(check) == {"webhooks": [receiver.url("localhost")], "failed": []}
    assert receiver.requests[0].headers["Host"] == f"localhost:{receiver.port}"


async def test_a_redirect_is_not_followed(
    server: Server, owner: Api, alerts: Alerts, tenant: Tenant, receiver: Receiver
) -> None:
    with receiving() as elsewhere:
        receiver.answers = [(307, {"Location": elsewhere.url()})]
        alert = await _firing_alert(server, owner, alerts, tenant, webhook_url=receiver.url())
        check = await check_now(alerts, alert.id)
    assert _notified(check) == {"webhooks": [], "failed": [receiver.url()]}
    assert len(receiver.requests) == 1 and elsewhere.requests == []


# ------------------------------------------------------------------------------------ save time


@pytest.mark.usefixtures("default_policy")
async def test_create_and_update_refuse_internal_webhook_urls(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=views())
    alert = await alerts.create(insight.id, webhook_url="https://hooks.example.com/alerts")
    for url in INTERNAL_URLS:
        err = await expect_error(alerts.create(insight.id, webhook_url=url), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "alert.webhook_url")
        assert error_info(err).reason == "WEBHOOK_TARGET_NOT_ALLOWED", url
        err = await expect_error(
            alerts.update(alert.id, ["webhook_url"], webhook_url=url), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert_invalid(err, "alert.webhook_url")
    assert (await alerts.get(alert.id)).webhook_url == "https://hooks.example.com/alerts"
    for url in ("http://93.184.216.34:8080/hook", "https://[2606:4700::1111]/hook", "https://example.com/"):
        assert (await alerts.update(alert.id, ["webhook_url"], webhook_url=url)).webhook_url == url


async def test_the_allowlist_admits_named_internal_targets_at_save_time(
    server: Server, owner: Api, alerts: Alerts
) -> None:
    saved = _policy(server, EgressPolicy.parse("10.0.0.0/8, hooks.internal"))
    try:
        insight = await owner.create(name="Views", query=views())
        for url in ("http://10.1.2.3/hook", "http://0x0a000001/hook", "https://hooks.internal/x"):
            assert (await alerts.create(insight.id, webhook_url=url)).webhook_url == url
        for url in ("http://127.0.0.1/hook", "http://metadata.google.internal/", "http://192.168.0.1/"):
            err = await expect_error(alerts.create(insight.id, webhook_url=url), grpc.StatusCode.INVALID_ARGUMENT)
            assert_invalid(err, "alert.webhook_url")
    finally:
        server.app.alerts.webhook_policy, server.app.checker.notifier.egress = saved


@pytest.mark.usefixtures("default_policy")
async def test_an_alert_with_a_stored_internal_url_stays_editable(
    server: Server, owner: Api, alerts: Alerts
) -> None:
    insight = await owner.create(name="Views", query=views())
    alert = await alerts.create(insight.id)
    _set_url(server, alert.id, "http://10.0.0.1/hook")  # saved before the policy existed
    renamed = await alerts.update(alert.id, ["name"], name="Renamed")
    assert renamed.name == "Renamed" and renamed.webhook_url == "http://10.0.0.1/hook"
    cleared = await alerts.update(alert.id, ["webhook_url"], webhook_url="")
    assert cleared.webhook_url == ""
