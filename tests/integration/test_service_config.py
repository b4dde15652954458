"""The service config (server/service_config.json): well formed per gRPC's schema, naming every RPC of
the served services exactly once, accepted by grpc itself, and retrying a read (never a write) whose
connection really failed under it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from server.app import SERVICES
from server.transport import SERVICE_CONFIG_PATH, service_config, service_config_options
from tests.integration.itkit import Api, Server, trends_viz
from tests.support.h2proxy import FrameProxy

# gRPC's service-config schema (grpc/src/proto/grpc/service_config/service_config.proto), the keys
# this file may use: anything else is a typo that grpc-core rejects and other clients ignore.
_METHOD_CONFIG_KEYS = {"name", "timeout", "retryPolicy", "waitForReady", "maxRequestMessageBytes", "maxResponseMessageBytes"}
_RETRY_KEYS = {"maxAttempts", "initialBackoff", "maxBackoff", "backoffMultiplier", "retryableStatusCodes"}
REPO = Path(__file__).resolve().parents[2]
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


def _config() -> dict[str, Any]:
    return dict(json.loads(SERVICE_CONFIG_PATH.read_text()))


def _seconds(duration: str) -> float:
    assert _DURATION.match(duration), duration
    return float(duration[:-1])


def _methods() -> dict[tuple[str, str], Any]:
    return {(s.full_name, m.name): m for s in SERVICES for m in s.methods}


def test_the_config_has_the_schema_shape_and_classifies_every_rpc_once() -> None:
    config = _config()
    assert set(config) <= {"methodConfig", "retryThrottling", "loadBalancingConfig"}
    methods = _methods()
    seen: list[tuple[str, str]] = []
    for entry in config["methodConfig"]:
        assert set(entry) <= _METHOD_CONFIG_KEYS, entry.keys()
        for name in entry["name"]:
            assert set(name) == {"service", "method"}, name  # every RPC named on its own
            seen.append((name["service"], name["method"]))
        if "timeout" in entry:
            assert _seconds(entry["timeout"]) > 0
        policy = entry.get("retryPolicy")
        if policy is not None:
            assert set(policy) == _RETRY_KEYS
            assert isinstance(policy["maxAttempts"], int) and 2 <= policy["maxAttempts"] <= 5
            assert 0 < _seconds(policy["initialBackoff"]) <= _seconds(policy["maxBackoff"])
            assert policy["backoffMultiplier"] > 0
            assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
            for service, method in (tuple(n.values()) for n in entry["name"]):
                # A client stream would have to be buffered whole to be replayed.
                assert not methods[(service, method)].client_streaming, method
                assert not method.startswith(("Create", "Update", "Delete")), method
    unknown = [name for name in seen if name not in methods]
    assert not unknown, f"names that are no RPC: {unknown}"
    assert len(seen) == len(set(seen)), "grpc rejects a config naming a method twice"
    missing = sorted(set(methods) - set(seen))
    assert not missing, f"RPCs the service config does not classify: {missing}"
    throttling = config["retryThrottling"]
    assert 0 < throttling["maxTokens"] <= 1000 and throttling["tokenRatio"] > 0


async def test_grpc_applies_the_config_and_rejects_a_broken_one(server: Server, api: Api) -> None:
    created = await api.create(name="configured", query=trends_viz())
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=created.id)
    async with grpc.aio.insecure_channel(server.target, options=service_config_options()) as channel:
        got = await igrpc.InsightsServiceStub(channel).GetInsight(request, metadata=api.metadata, timeout=30)
    assert got.id == created.id
    # The same check fails for a config grpc cannot parse: the call above proves it parsed this one.
    broken = json.loads(service_config())
    broken["methodConfig"][0]["retryPolicy"]["maxAttempts"] = "four"
    options = [("grpc.service_config", json.dumps(broken))]
    async with grpc.aio.insecure_channel(server.target, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await igrpc.InsightsServiceStub(channel).GetInsight(request, metadata=api.metadata, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "errors validating service config" in (failure.value.details() or "")


async def test_a_read_is_retried_after_its_connection_failed_under_it(server: Server, api: Api) -> None:
    created = await api.create(name="retried", query=trends_viz())
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=created.id)

    async with (
        FrameProxy(server.port, cut_calls=1) as proxy,
        grpc.aio.insecure_channel(proxy.target, options=service_config_options()) as channel,
    ):
        got = await igrpc.InsightsServiceStub(channel).GetInsight(request, metadata=api.metadata, timeout=30)
    assert got.id == created.id
    # The first attempt reached the wire and its connection was cut; the retry came on a new one.
    assert len(proxy.attempts) == 2 and proxy.connections == 2

    # Without the config the same failure reaches the caller: the retry above is the config's.
    async with (
        FrameProxy(server.port, cut_calls=1) as proxy,
        grpc.aio.insecure_channel(proxy.target) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await igrpc.InsightsServiceStub(channel).GetInsight(request, metadata=api.metadata, timeout=30)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(proxy.attempts) == 1


async def test_a_write_is_not_retried(server: Server, api: Api) -> None:
    # The server may have done a write whose answer was lost: only the caller can tell whether to
    # send it again (CreateInsight's request_id makes that safe).
    create = ipb.CreateInsightRequest(
        environment_id=api.environment_id, insight=ipb.Insight(name="once", query=trends_viz())
    )
    async with (
        FrameProxy(server.port, cut_calls=1) as proxy,
        grpc.aio.insecure_channel(proxy.target, options=service_config_options()) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await igrpc.InsightsServiceStub(channel).CreateInsight(create, metadata=api.metadata, timeout=30)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(proxy.attempts) == 1


def test_the_command_line_prints_the_config_for_other_languages() -> None:
    # What a Go or Node client (or an operator's DNS TXT record) is given: the file, or one line.
    compact = subprocess.run(
        [sys.executable, "-m", "server", "service-config", "--compact"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert compact.count("\n") == 1
    assert json.loads(compact) == _config()
    assert compact.strip() == service_config()
