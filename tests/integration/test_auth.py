"""API-key authentication, scopes per RPC and environment isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qsgrpc
from tests.integration.itkit import Api, Server, Tenant, bearer, error_info, expect_error, trends_query

RequestFactory = Callable[[int], Any]

# method -> (required scope, a scope that does not satisfy it, request factory)
METHODS: dict[str, tuple[str, str, RequestFactory]] = {
    "ListInsights": (
        "insight:read",
        "dashboard:write",
        lambda env: ipb.ListInsightsRequest(environment_id=env),
    ),
    "GetInsight": (
        "insight:read",
        "activity_log:read",
        lambda env: ipb.GetInsightRequest(environment_id=env, id=1),
    ),
    "CreateInsight": (
        "insight:write",
        "insight:read",
        lambda env: ipb.CreateInsightRequest(environment_id=env, insight=ipb.Insight(name="denied")),
    ),
    "UpdateInsight": (
        "insight:write",
        "insight:read",
        lambda env: ipb.UpdateInsightRequest(environment_id=env, id=1, insight=ipb.Insight(name="denied")),
    ),
    "DeleteInsight": (
        "insight:write",
        "insight:read",
        lambda env: ipb.DeleteInsightRequest(environment_id=env, id=1),
    ),
    "ListInsightActivity": (
        "activity_log:read",
        "insight:write",
        lambda env: ipb.ListInsightActivityRequest(environment_id=env),
    ),
    "BulkUpdateInsightTags": (
        "insight:write",
        "insight:read",
        lambda env: ipb.BulkUpdateInsightTagsRequest(
            environment_id=env, ids=[1], action=ipb.BULK_TAG_ACTION_ADD, tags=["x"]
        ),
    ),
}


def _call(stub: igrpc.InsightsServiceStub, method: str, request: Any, metadata: Any) -> Any:
    return getattr(stub, method)(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_missing_scope_is_permission_denied_naming_the_scope(
    stub: igrpc.InsightsServiceStub, tenant: Tenant, api: Api, method: str
) -> None:
    required, insufficient, make_request = METHODS[method]
    key = tenant.key(insufficient)

    err = await expect_error(
        _call(stub, method, make_request(tenant.environment_id), bearer(key)),
        grpc.StatusCode.PERMISSION_DENIED,
    )

    assert f"'{required}'" in (err.details() or ""), err.details()
    info = error_info(err)
    assert info.reason == "MISSING_SCOPE"
    assert info.metadata["scope"] == required
    # nothing happened on the refused call
    assert (await api.list()).count == 0


async def test_write_implies_read(api: Api, tenant: Tenant) -> None:
    writer = api.as_key(tenant.key("insight:write"))
    created = await writer.create(name="written")
    assert (await writer.get(created.id)).name == "written"
    assert await writer.list_ids() == [created.id]

    activity_writer = api.as_key(tenant.key("activity_log:write"))
    assert (await activity_writer.activity(created.id)).total_count == 1


async def test_read_scope_allows_reads(api: Api, tenant: Tenant) -> None:
    created = await api.create(name="readable")
    reader = api.as_key(tenant.key("insight:read"))
    assert (await reader.get(created.short_id)).id == created.id
    assert await reader.list_ids() == [created.id]


async def test_star_grants_every_method(api: Api, tenant: Tenant) -> None:
    star = api.as_key(tenant.key("*"))

    created = await star.create(name="star")
    assert (await star.get(created.id)).id == created.id
    assert await star.list_ids() == [created.id]
    assert (await star.update(created.id, ["name"], name="star 2")).name == "star 2"
    assert (await star.bulk_tags([created.id], ipb.BULK_TAG_ACTION_ADD, ["t"])).updated[0].tags == ["t"]
    assert (await star.activity(created.id)).total_count == 3
    assert (await star.delete(created.id)).deleted is True


# case -> (metadata, the ErrorInfo reason a client can act on)
UNAUTHENTICATED_METADATA: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "no header": ((), "MISSING_API_KEY"),
    "basic scheme": ((("authorization", "Basic dXNlcjpwYXNz"),), "MALFORMED_AUTHORIZATION"),
    "bearer without key": ((("authorization", "Bearer"),), "MALFORMED_AUTHORIZATION"),
    "bearer with blank key": ((("authorization", "Bearer    "),), "MALFORMED_AUTHORIZATION"),
    "key without scheme": (
        (("authorization", "phx_abcdefghijklmnopqrstuvwxyz0123456789"),),
        "MALFORMED_AUTHORIZATION",
    ),
    "unknown key": (
        (("authorization", "Bearer phx_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"),),
        "INVALID_API_KEY",
    ),
}


@pytest.mark.parametrize("case", sorted(UNAUTHENTICATED_METADATA))
async def test_unauthenticated(stub: igrpc.InsightsServiceStub, tenant: Tenant, case: str) -> None:
    metadata, reason = UNAUTHENTICATED_METADATA[case]
    request = ipb.ListInsightsRequest(environment_id=tenant.environment_id)
    err = await expect_error(
        stub.ListInsights(request, metadata=metadata, timeout=10), grpc.StatusCode.UNAUTHENTICATED
    )
    assert error_info(err).domain == "insights.v1"
    assert error_info(err).reason == reason
    assert err.details() == {
        "MISSING_API_KEY": "missing authorization metadata: send 'authorization: Bearer <personal API key>'",
        "MALFORMED_AUTHORIZATION": "authorization must be 'Bearer <personal API key>'",
        "INVALID_API_KEY": "Invalid personal API key.",
    }[reason], "the answer says what to send"


@pytest.mark.parametrize("spelling", ["bearer {key}", "BEARER {key}", "Bearer   {key}  "])
async def test_the_scheme_is_case_insensitive_and_blanks_around_the_key_do_not_matter(
    api: Api, tenant: Tenant, spelling: str
) -> None:
    created = await api.create(name="mine")
    key = tenant.key("insight:read")
    reader = Api(api.stub, api.environment_id, (("authorization", spelling.format(key=key)),))
    assert await reader.list_ids() == [created.id]


async def test_a_streaming_rpc_checks_the_key_and_its_scopes(server: Server, tenant: Tenant) -> None:
    queries = qsgrpc.QueryServiceStub(server.channel)
    request = qs.StreamQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(trends_query=trends_query())
    )

    async def stream(metadata: Any) -> list[qs.QueryEvent]:
        return [event async for event in queries.StreamQuery(request, metadata=metadata, timeout=20)]

    err = await expect_error(stream(()), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "MISSING_API_KEY"
    err = await expect_error(stream(bearer(tenant.key("insight:write"))), grpc.StatusCode.PERMISSION_DENIED)
    assert (error_info(err).reason, error_info(err).metadata["scope"]) == ("MISSING_SCOPE", "query:read")
    events = await stream(bearer(tenant.key("query:read")))
    assert events[-1].HasField("result")


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Basic dXNlcjpwYXNz"),)], ids=["no key", "a malformed key"]
)
async def test_health_and_reflection_answer_without_a_key(server: Server, metadata: Any) -> None:
    # Load balancers and grpcurl call these with no key (grpcurl passes its -H headers along).
    health = health_pb2_grpc.HealthStub(server.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    call = reflection_pb2_grpc.ServerReflectionStub(server.channel).ServerReflectionInfo(
        metadata=metadata, timeout=10
    )
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.done_writing()
    assert "insights.v1.InsightsService" in {s.name for s in listed.list_services_response.service}


async def test_a_key_sent_with_a_sharing_credential_is_judged_as_a_key(api: Api, tenant: Tenant) -> None:
    # A viewer's client that also holds a key (an embedding page) keeps its key's access.
    created = await api.create(name="embedded")
    key = bearer(tenant.key("insight:read"))
    for header in ("x-sharing-access-token", "x-share-token"):
        reader = Api(api.stub, api.environment_id, (*key, (header, "a-link-token")))
        assert await reader.list_ids() == [created.id], header


async def test_a_key_with_extra_characters_is_unknown(
    stub: igrpc.InsightsServiceStub, tenant: Tenant
) -> None:
    key = tenant.key("insight:read")
    request = ipb.ListInsightsRequest(environment_id=tenant.environment_id)
    await expect_error(
        stub.ListInsights(request, metadata=bearer(key + "x"), timeout=10), grpc.StatusCode.UNAUTHENTICATED
    )
    await expect_error(
        stub.ListInsights(request, metadata=bearer(key[:-1]), timeout=10), grpc.StatusCode.UNAUTHENTICATED
    )


async def test_revoked_key_is_unauthenticated(api: Api, tenant: Tenant) -> None:
    key = tenant.key("insight:read")
    reader = api.as_key(key)
    await reader.list()

    tenant.revoke(key)

    await expect_error(reader.list(), grpc.StatusCode.UNAUTHENTICATED)


async def test_unauthenticated_is_checked_before_scopes(
    stub: igrpc.InsightsServiceStub, tenant: Tenant
) -> None:
    request = ipb.CreateInsightRequest(environment_id=tenant.environment_id, insight=ipb.Insight(name="x"))
    await expect_error(stub.CreateInsight(request, timeout=10), grpc.StatusCode.UNAUTHENTICATED)


async def test_key_limited_to_another_environment(api: Api, tenant: Tenant) -> None:
    second_env = tenant.add_environment()
    limited = api.as_key(tenant.key("insight:write", environments=[second_env]))

    err = await expect_error(limited.list(), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
    metadata = dict(error_info(err).metadata)
    assert metadata.pop("request_id")  # every error carries its call's id
    assert metadata == {"environment_id": str(tenant.environment_id)}
    await expect_error(limited.create(name="nope"), grpc.StatusCode.PERMISSION_DENIED)

    allowed = limited.in_environment(second_env)
    created = await allowed.create(name="allowed")
    assert await allowed.list_ids() == [created.id]
    assert (await api.list()).count == 0


async def test_environment_of_another_organization(
    api: Api, tenant: Tenant, make_tenant: Callable[[], Tenant]
) -> None:
    stranger = make_tenant()
    stranger_api = api.as_key(stranger.key("insight:write"), stranger.environment_id)
    theirs = await stranger_api.create(name="theirs")

    intruder = api.in_environment(stranger.environment_id)
    for call in (
        intruder.list(),
        intruder.get(theirs.id),
        intruder.get(theirs.short_id),
        intruder.create(name="planted"),
        intruder.update(theirs.id, ["name"], name="hijacked"),
        intruder.delete(theirs.id),
        intruder.activity(theirs.id),
        intruder.bulk_tags([theirs.id], ipb.BULK_TAG_ACTION_SET, ["x"]),
    ):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"

    # even a key limited to that environment does not help a non-member
    limited = api.as_key(
        tenant.key("insight:write", environments=[stranger.environment_id]), stranger.environment_id
    )
    await expect_error(limited.list(), grpc.StatusCode.PERMISSION_DENIED)

    untouched = await stranger_api.get(theirs.id)
    assert untouched.name == "theirs"
    assert list(untouched.tags) == []
    assert (await stranger_api.list()).count == 1


async def test_unknown_environment_is_answered_like_a_foreign_one(api: Api) -> None:
    nowhere = api.in_environment(987_654_321)
    err = await expect_error(nowhere.get(123), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
    await expect_error(nowhere.list(), grpc.StatusCode.PERMISSION_DENIED)


async def test_another_environments_insight_is_not_found(api: Api, tenant: Tenant) -> None:
    second_env = tenant.add_environment()
    theirs = await api.in_environment(second_env).create(name="in the second environment")

    await expect_error(api.get(theirs.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.get(theirs.short_id), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.update(theirs.id, ["name"], name="hijacked"), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.update(theirs.id, ["deleted"], deleted=True), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.delete(theirs.id), grpc.StatusCode.NOT_FOUND)

    untouched = await api.in_environment(second_env).get(theirs.id)
    assert untouched.name == "in the second environment"
    assert untouched.deleted is False


def _raw_error_info(answer: dict[bytes, bytes]) -> tuple[str, str]:
    """(reason, message) of a raw call's answer, from its grpc-status-details-bin trailer."""
    import base64

    from google.rpc import error_details_pb2, status_pb2

    encoded = answer[b"grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(encoded + b"=" * (-len(encoded) % 4)))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason, status.message


@pytest.mark.parametrize(
    ("header", "value", "reason", "message"),
    [
        (
            "authorization",
            "Bearer phx_caf\xe9",
            "MALFORMED_AUTHORIZATION",
            "authorization must be 'Bearer <personal API key>'",
        ),
        ("x-share-token", "caf\xe9-token", "MALFORMED_SHARING_CREDENTIAL", "x-share-token must be printable ASCII"),
        (
            "x-sharing-access-token",
            "caf\xe9-link",
            "MALFORMED_SHARING_CREDENTIAL",
            "x-sharing-access-token must be printable ASCII",
        ),
    ],
)
async def test_a_credential_outside_printable_ascii_is_refused_as_malformed(
    server: Server, header: str, value: str, reason: str, message: str
) -> None:
    # grpc hands such header bytes over decoded as Latin-1; no key or token can contain them.
    from tests.support.rawgrpc import unary_call

    method = (
        "/insights.v1.InsightsService/ListInsights"
        if header == "authorization"
        else "/insights.v1.SharingService/GetSharedInsight"
    )
    answer = await asyncio.to_thread(
        unary_call, server.port, method, b"", [(header.encode(), value.encode("latin-1"))]
    )
    assert answer[b"grpc-status"] == str(grpc.StatusCode.UNAUTHENTICATED.value[0]).encode()
    assert _raw_error_info(answer) == (reason, message)
