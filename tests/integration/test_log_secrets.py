"""No log line holds a key, a share token or a password, even when grpc itself logs a raw header."""

from __future__ import annotations

import asyncio
import logging
import secrets

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from tests.integration.itkit import Server, Tenant, expect_error
from tests.support.rawgrpc import unary_call

LIST = "/insights.v1.InsightsService/ListInsights"
SHARED = "/insights.v1.SharingService/GetSharedInsight"


async def _raw(
    server: Server, method: str, request: bytes, header: bytes, value: bytes
) -> dict[bytes, bytes]:
    return await asyncio.to_thread(unary_call, server.port, method, request, [(header, value)])


async def test_a_credential_with_invalid_utf8_is_refused_and_never_logged(
    server: Server, tenant: Tenant, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # The raw client's own header dumps are the test's, not the server's.
    for client_logger in ("hpack", "h2"):
        caplog.set_level(logging.INFO, logger=client_logger)
    key = tenant.key("insight:read")
    share_token = secrets.token_urlsafe(32)
    access_token = secrets.token_urlsafe(22)
    password = f"pw-{secrets.token_urlsafe(12)}"
    listing = ipb.ListInsightsRequest(environment_id=tenant.environment_id).SerializeToString()
    shared = spb.GetSharedInsightRequest().SerializeToString()

    # A valid key with a byte that is not UTF-8 after it, and one with such bytes in its middle.
    broken_key = f"Bearer {key[:12]}\xc3({key[12:]}".encode("latin1")
    answers = [
        await _raw(server, LIST, listing, b"authorization", b"Bearer " + key.encode() + b"\xff"),
        await _raw(server, LIST, listing, b"authorization", broken_key),
        await _raw(server, SHARED, shared, b"x-share-token", share_token.encode() + b"\xfe"),
        await _raw(server, SHARED, shared, b"x-sharing-access-token", b"\x80" + access_token.encode()),
    ]
    sharing = sgrpc.SharingServiceStub(server.channel)
    await expect_error(
        sharing.UnlockSharedInsight(
            spb.UnlockSharedInsightRequest(access_token=access_token, password=password), timeout=10
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )

    for answer in answers:
        assert answer.get(b"grpc-status") == str(grpc.StatusCode.UNAUTHENTICATED.value[0]).encode(), answer
    # grpc does log these headers (the record is kept, its value is not).
    assert any(r.name.startswith("grpc") and "Invalid encoding" in r.getMessage() for r in caplog.records)
    logged = "\n".join(
        logging.Formatter("%(name)s %(message)s").format(record) for record in caplog.records
    )
    captured = capfd.readouterr()
    for text in (logged, caplog.text, captured.err, captured.out):
        for secret in (key, key[12:], key[:12], share_token, access_token, password):
            assert secret not in text
