"""WebhookNotifier over real loopback sockets: the egress policy at send time, pinning, TLS, redirects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from server.domain.alerts.egress import EgressPolicy
from server.domain.alerts.notify import Egress, Notification, WebhookNotifier
from tests.integration.webhookkit import receiving, self_signed

LOOPBACK = EgressPolicy.parse("127.0.0.1/32")


def notification() -> Notification:
    return Notification(7, "a-1", "Too many pageviews", 42, "abc123", "Views", "c-1", "Firing", 5.0)


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def _no_wait(_seconds: float) -> None:
    pass


def notifier(egress: Egress, attempts: int = 1) -> WebhookNotifier:
    return WebhookNotifier(_in_thread, timeout=5, attempts=attempts, sleep=_no_wait, egress=egress)


class FakeDns:
    """A resolver with fixed answers per name (in turn, the last one repeating); records lookups."""

    def __init__(self, **answers: Sequence[Sequence[str]]) -> None:
        self.answers = {name.replace("_", "."): list(turns) for name, turns in answers.items()}
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        turns = self.answers[host]
        return turns.pop(0) if len(turns) > 1 else turns[0]


async def test_connects_to_the_checked_address_with_the_original_host_header() -> None:
    # hooks.example never resolves through the system: only the checked answer can be used.
    dns = FakeDns(hooks_example=[["127.0.0.1"]])
    with receiving() as receiver:
        url = receiver.url("hooks.example", "/hook?team=7")
        result = await notifier(Egress(LOOPBACK, dns)).deliver(url, notification())
    assert result.delivered and result.status == 200
    (request,) = receiver.requests
    assert request.headers["Host"] == f"hooks.example:{receiver.port}" and request.path == "/hook?team=7"
    assert dns.lookups == [("hooks.example", receiver.port)]


async def test_each_attempt_checks_the_address_it_connects_to() -> None:
    # Rebinding: the first answer is admitted, the retry's answer is the metadata service.
    dns = FakeDns(hooks_example=[["127.0.0.1"], ["169.254.169.254"]])
    with receiving() as receiver:
        receiver.answers = [(503, {})]
        result = await notifier(Egress(LOOPBACK, dns), attempts=3).deliver(
            receiver.url("hooks.example"), notification()
        )
    assert not result.delivered and result.attempts == 2 and len(receiver.requests) == 1
    assert result.error == "refused by the egress policy (metadata)"


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["::ffff:127.0.0.1"], ["10.1.2.3"]]
)
async def test_a_name_resolving_inside_is_refused_without_a_connection(answer: list[str]) -> None:
    dns = FakeDns(hooks_example=[answer])
    with receiving() as receiver:
        result = await notifier(Egress(EgressPolicy(), dns), attempts=3).deliver(
            receiver.url("hooks.example"), notification()
        )
    assert not result.delivered and result.attempts == 1 and result.status is None  # not retried
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "localhost", "[::ffff:127.0.0.1]"]
)
async def test_loopback_in_any_spelling_is_refused_by_the_system_resolver(host: str) -> None:
    with receiving() as receiver:
        result = await notifier(Egress()).deliver(receiver.url(host), notification())
    assert not result.delivered and receiver.requests == []


async def test_an_allowlisted_name_is_delivered_through_the_system_resolver() -> None:
    with receiving() as receiver:
        result = await notifier(Egress(EgressPolicy.parse("localhost"))).deliver(
            receiver.url("localhost"), notification()
        )
    assert result.delivered and len(receiver.requests) == 1
    assert receiver.requests[0].headers["Host"] == f"localhost:{receiver.port}"


async def test_https_verifies_the_host_name_over_the_pinned_address(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, "hooks.example")
    dns = FakeDns(hooks_example=[["127.0.0.1"]], other_example=[["127.0.0.1"]])
    egress = Egress(LOOPBACK, dns, cert.client)
    with receiving(cert.server) as receiver:
        good = await notifier(egress).deliver(receiver.url("hooks.example"), notification())
        wrong = await notifier(egress).deliver(receiver.url("other.example"), notification())
    assert good.delivered and receiver.requests[0].headers["Host"] == f"hooks.example:{receiver.port}"
    assert receiver.server_names[0] == "hooks.example"  # SNI names the host, not the address
    # The certificate is for hooks.example: reaching the same address as other.example fails.
    assert not wrong.delivered and wrong.error is not None and "certificate" in wrong.error.lower()
    assert len(receiver.requests) == 1


async def test_a_redirect_is_a_failed_delivery_and_is_not_followed() -> None:
    with receiving() as target, receiving() as receiver:
        receiver.answers = [(302, {"Location": target.url()})]
        result = await notifier(Egress(LOOPBACK), attempts=3).deliver(receiver.url(), notification())
    assert not result.delivered and result.status == 302 and result.attempts == 1
    assert len(receiver.requests) == 1 and target.requests == []
