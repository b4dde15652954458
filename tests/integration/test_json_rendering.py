"""Every RPC's responses render as protobuf JSON (what grpcurl prints), with no Value left without a kind.

One scenario calls every method of every service with populated answers; a client interceptor
records what came back. The list of methods comes from the service descriptors, so a new RPC
fails this test until the scenario exercises it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from generated.insights.v1 import actions_pb2 as actpb
from generated.insights.v1 import actions_pb2_grpc as actgrpc
from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import cohorts_pb2 as cpb
from generated.insights.v1 import cohorts_pb2_grpc as cgrpc
from generated.insights.v1 import common_pb2
from generated.insights.v1 import dashboards_pb2 as dpb
from generated.insights.v1 import dashboards_pb2_grpc as dgrpc
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_analysis_pb2 as anpb
from generated.insights.v1 import insight_metadata_pb2 as impb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import insight_views_pb2 as vpb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qsgrpc
from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from server.app import SERVICES
from tests.integration.itkit import Server, Tenant, bearer, trends_query, viz

TIMEOUT = 30.0


class Recorder:
    """Keeps every response message a channel receives, per method path."""

    def __init__(self) -> None:
        self.responses: dict[str, list[Message]] = defaultdict(list)

    def interceptors(self) -> list[Any]:
        # grpc.aio files an interceptor under the first call kind it implements, so one per kind.
        return [_Unary(self), _UnaryStream(self), _StreamUnary(self), _StreamStream(self)]

    def keep(self, details: Any, message: Message) -> None:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        self.responses[method].append(message)

    async def stream(self, details: Any, call: Any) -> AsyncIterator[Any]:
        async for message in call:
            self.keep(details, message)
            yield message

    async def single(self, details: Any, call: Any) -> Any:
        self.keep(details, await call)
        return call


class _Reporting:
    """The recorder a client interceptor of one call kind (below) reports to."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder


class _Unary(_Reporting, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self.recorder.single(details, await continuation(details, request))


class _StreamUnary(_Reporting, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self.recorder.single(details, await continuation(details, requests))


class _UnaryStream(_Reporting, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self.recorder.stream(details, await continuation(details, request))


class _StreamStream(_Reporting, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self.recorder.stream(details, await continuation(details, requests))


def unset_values(message: Message, path: str = "") -> Iterator[str]:
    """Paths of google.protobuf.Value messages without a kind (JSON printers refuse them)."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Value" and message.WhichOneof("kind") is None:
        yield path or "<root>"
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        fpath = f"{path}.{field.name}" if path else field.name
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    yield from unset_values(item, f"{fpath}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from unset_values(item, f"{fpath}[{index}]")
        else:
            yield from unset_values(value, fpath)


def test_unset_values_finds_a_value_without_a_kind() -> None:
    from google.protobuf import struct_pb2

    from generated.insights.v1 import activity_pb2

    change = activity_pb2.ActivityChange(before=struct_pb2.Value(), after=struct_pb2.Value(null_value=0))
    listed = struct_pb2.Struct()
    listed.fields["a"].list_value.values.add()

    assert list(unset_values(change)) == ["before"]
    assert list(unset_values(listed)) == ["fields['a'].list_value.values[0]"]


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    return stamp


async def _scenario(channel: grpc.aio.Channel, tenant: Tenant) -> None:
    """Calls every RPC once or more, on success paths whose answers carry data."""
    env = tenant.environment_id
    md = bearer(tenant.key("*"))
    insights, queries = igrpc.InsightsServiceStub(channel), qsgrpc.QueryServiceStub(channel)
    events, sharing = egrpc.EventsServiceStub(channel), sgrpc.SharingServiceStub(channel)
    alerts = agrpc.AlertsServiceStub(channel)

    async def batches() -> AsyncIterator[epb.IngestEventsRequest]:
        yield epb.IngestEventsRequest(
            environment_id=env,
            events=[
                epb.Event(
                    event="$pageview",
                    distinct_id=f"user-{i % 3}",
                    timestamp=_now(),
                    properties='{"$browser": "Chrome", "tags": [], "nested": {}}',
                    uuid=str(uuid.uuid4()),
                )
                for i in range(6)
            ]
            + [epb.Event(event="", distinct_id="", uuid="not-a-uuid")],  # a rejection in the answer
        )

    await events.IngestEvents(batches(), metadata=md, timeout=TIMEOUT)

    async def acknowledged() -> AsyncIterator[epb.IngestEventBatchesRequest]:
        async for batch in batches():
            # One acknowledged batch, with a rejection in its answer.
            yield epb.IngestEventBatchesRequest(environment_id=env, sequence=1, events=batch.events)

    async for _ in events.IngestEventBatches(acknowledged(), metadata=md, timeout=TIMEOUT):
        pass

    trends = trends_query()
    trends.breakdown_filter.breakdown.string_value = "$browser"
    query = viz(qpb.InsightSource(trends_query=trends))
    blocking = common_pb2.REFRESH_MODE_BLOCKING
    insight_request = ipb.CreateInsightRequest(
        environment_id=env, insight=ipb.Insight(name="Rendered", query=query), refresh=blocking
    )
    insight = await insights.CreateInsight(insight_request, metadata=md, timeout=TIMEOUT)
    other = await insights.CreateInsight(
        ipb.CreateInsightRequest(environment_id=env, insight=ipb.Insight(name="Deleted", description="d")),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.GetInsight(
        ipb.GetInsightRequest(environment_id=env, id=insight.id, refresh=blocking),
        metadata=md,
        timeout=TIMEOUT,
    )
    # The analysis of the cached result just computed, and the follow-ups (their QueryNode unions).
    analysis = await insights.AnalyzeInsight(
        anpb.AnalyzeInsightRequest(environment_id=env, id=insight.id), metadata=md, timeout=TIMEOUT
    )
    assert analysis.markdown
    suggested = await insights.GetInsightSuggestions(
        anpb.GetInsightSuggestionsRequest(environment_id=env, id=insight.id, context="funnel"),
        metadata=md,
        timeout=TIMEOUT,
    )
    assert suggested.suggestions
    # A tag change: its activity diff goes from [] to a list (the "nil Value" grpcurl could not print).
    await insights.UpdateInsight(
        ipb.UpdateInsightRequest(
            environment_id=env,
            id=insight.id,
            insight=ipb.Insight(tags=["rendered"], description="described"),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "description"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.GenerateInsightMetadata(
        impb.GenerateInsightMetadataRequest(
            environment_id=env, query=viz(qpb.InsightSource(trends_query=trends_query()))
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.BulkUpdateInsightTags(
        ipb.BulkUpdateInsightTagsRequest(
            environment_id=env,
            ids=[insight.id, other.id, 10**12],
            action=ipb.BULK_TAG_ACTION_ADD,
            tags=["bulk"],
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.UpdateInsight(
        ipb.UpdateInsightRequest(
            environment_id=env,
            id=other.id,
            insight=ipb.Insight(tags=[]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.DeleteInsight(
        ipb.DeleteInsightRequest(environment_id=env, id=other.id), metadata=md, timeout=TIMEOUT
    )
    for request in (
        ipb.ListInsightsRequest(environment_id=env, refresh=blocking),
        ipb.ListInsightsRequest(environment_id=env, format=common_pb2.RESPONSE_FORMAT_CSV),
    ):
        await insights.ListInsights(request, metadata=md, timeout=TIMEOUT)
    # Views and CSV exports (insight_views.proto): populated answers of each.
    await insights.MarkInsightsViewed(
        vpb.MarkInsightsViewedRequest(environment_id=env, insight_ids=[insight.id, 10**12]),
        metadata=md,
        timeout=TIMEOUT,
    )
    await insights.ListMyLastViewedInsights(
        vpb.ListMyLastViewedInsightsRequest(environment_id=env), metadata=md, timeout=TIMEOUT
    )
    await insights.ListTrendingInsights(
        vpb.ListTrendingInsightsRequest(environment_id=env, days=7, limit=5), metadata=md, timeout=TIMEOUT
    )
    async for _ in insights.ExportInsights(
        ipb.ExportInsightsRequest(list=ipb.ListInsightsRequest(environment_id=env)), metadata=md, timeout=TIMEOUT
    ):
        pass
    async for _ in insights.ExportInsightResult(
        vpb.ExportInsightResultRequest(environment_id=env, id=insight.id), metadata=md, timeout=TIMEOUT
    ):
        pass
    for request_activity in (
        ipb.ListInsightActivityRequest(environment_id=env, id=insight.id),
        ipb.ListInsightActivityRequest(environment_id=env, limit=1, page=2),
    ):
        await insights.ListInsightActivity(request_activity, metadata=md, timeout=TIMEOUT)

    run_query = qpb.QueryNode(trends_query=trends)
    await queries.RunQuery(
        qs.RunQueryRequest(environment_id=env, query=run_query), metadata=md, timeout=TIMEOUT
    )
    fresh = qpb.QueryNode()
    fresh.CopyFrom(run_query)
    fresh.trends_query.date_range.date_from = "-14d"
    started = await queries.RunQuery(
        qs.RunQueryRequest(
            environment_id=env,
            query=fresh,
            refresh=common_pb2.REFRESH_MODE_FORCE_ASYNC,
            client_query_id="rendered-run",
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    assert started.HasField("query_status")
    async for _ in queries.StreamQuery(
        qs.StreamQueryRequest(environment_id=env, query=fresh, refresh=common_pb2.REFRESH_MODE_BLOCKING),
        metadata=md,
        timeout=TIMEOUT,
    ):
        pass
    await queries.GetQueryStatus(
        qs.GetQueryStatusRequest(environment_id=env, query_id="rendered-run", show_progress=True),
        metadata=md,
        timeout=TIMEOUT,
    )
    await queries.CancelQuery(
        qs.CancelQueryRequest(environment_id=env, query_id="rendered-run"), metadata=md, timeout=TIMEOUT
    )

    await sharing.GetSharingConfiguration(
        spb.GetSharingConfigurationRequest(environment_id=env, insight_id=insight.id),
        metadata=md,
        timeout=TIMEOUT,
    )
    settings = spb.SharingConfiguration(enabled=True)
    settings.settings.update({"hideExtraDetails": False})
    await sharing.UpdateSharingConfiguration(
        spb.UpdateSharingConfigurationRequest(
            environment_id=env,
            insight_id=insight.id,
            sharing_configuration=settings,
            update_mask=field_mask_pb2.FieldMask(paths=["enabled", "settings"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    enabled = await sharing.GetSharingConfiguration(
        spb.GetSharingConfigurationRequest(environment_id=env, insight_id=insight.id),
        metadata=md,
        timeout=TIMEOUT,
    )
    await sharing.GetSharedInsight(
        spb.GetSharedInsightRequest(),
        metadata=(("x-sharing-access-token", enabled.access_token),),
        timeout=TIMEOUT,
    )
    await sharing.UpdateSharingConfiguration(
        spb.UpdateSharingConfigurationRequest(
            environment_id=env,
            insight_id=insight.id,
            sharing_configuration=spb.SharingConfiguration(password_required=True),
            update_mask=field_mask_pb2.FieldMask(paths=["password_required"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    password = await sharing.CreateSharePassword(
        spb.CreateSharePasswordRequest(environment_id=env, insight_id=insight.id, note="board"),
        metadata=md,
        timeout=TIMEOUT,
    )
    config = await sharing.RefreshSharingToken(
        spb.RefreshSharingTokenRequest(environment_id=env, insight_id=insight.id),
        metadata=md,
        timeout=TIMEOUT,
    )
    unlocked = await sharing.UnlockSharedInsight(
        spb.UnlockSharedInsightRequest(access_token=config.access_token, password=password.password),
        timeout=TIMEOUT,
    )
    await sharing.GetSharedInsight(
        spb.GetSharedInsightRequest(refresh=blocking),
        metadata=(("x-share-token", unlocked.share_token),),
        timeout=TIMEOUT,
    )
    await sharing.DeleteSharePassword(
        spb.DeleteSharePasswordRequest(
            environment_id=env, insight_id=insight.id, password_id=config.share_passwords[0].id
        ),
        metadata=md,
        timeout=TIMEOUT,
    )

    threshold = apb.Threshold(
        name="bounds",
        configuration=apb.InsightThreshold(
            type=apb.INSIGHT_THRESHOLD_TYPE_ABSOLUTE, bounds=apb.InsightsThresholdBounds(upper=1, lower=0)
        ),
    )
    alert = await alerts.CreateAlert(
        apb.CreateAlertRequest(
            environment_id=env,
            alert=apb.Alert(insight=insight.id, name="Rendered alert", threshold=threshold),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await alerts.CheckAlertNow(
        apb.CheckAlertNowRequest(environment_id=env, alert_id=alert.id), metadata=md, timeout=TIMEOUT
    )
    await alerts.GetAlert(apb.GetAlertRequest(environment_id=env, id=alert.id), metadata=md, timeout=TIMEOUT)
    await alerts.ListAlerts(apb.ListAlertsRequest(environment_id=env), metadata=md, timeout=TIMEOUT)
    await alerts.ListAlertChecks(
        apb.ListAlertChecksRequest(environment_id=env, alert_id=alert.id), metadata=md, timeout=TIMEOUT
    )
    await alerts.ListThresholds(
        apb.ListThresholdsRequest(environment_id=env, insight_id=insight.id), metadata=md, timeout=TIMEOUT
    )
    await alerts.GetThreshold(
        apb.GetThresholdRequest(environment_id=env, insight_id=insight.id, id=alert.threshold.id),
        metadata=md,
        timeout=TIMEOUT,
    )
    await alerts.UpdateAlert(
        apb.UpdateAlertRequest(
            environment_id=env,
            id=alert.id,
            alert=apb.Alert(snoozed_until="1d"),
            update_mask=field_mask_pb2.FieldMask(paths=["snoozed_until"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await alerts.DeleteAlert(
        apb.DeleteAlertRequest(environment_id=env, id=alert.id), metadata=md, timeout=TIMEOUT
    )

    actions = actgrpc.ActionsServiceStub(channel)
    action = await actions.CreateAction(
        actpb.CreateActionRequest(
            environment_id=env,
            action=actpb.Action(
                name="Rendered action",
                tags=["demo"],
                steps=[
                    actpb.ActionStep(event="$pageview", url="/signup"),
                    actpb.ActionStep(
                        selector='button[data-attr="go"]',
                        properties=[qpb.PropertyFilter(key="$browser", value=qpb.PropertyValue(string_value="x"))],
                    ),
                ],
            ),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await actions.GetAction(actpb.GetActionRequest(environment_id=env, id=action.id), metadata=md, timeout=TIMEOUT)
    await actions.ListActions(actpb.ListActionsRequest(environment_id=env), metadata=md, timeout=TIMEOUT)
    await actions.UpdateAction(
        actpb.UpdateActionRequest(
            environment_id=env,
            id=action.id,
            action=actpb.Action(steps=[actpb.ActionStep(event="signup")]),
            update_mask=field_mask_pb2.FieldMask(paths=["steps"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await actions.DeleteAction(
        actpb.DeleteActionRequest(environment_id=env, id=action.id), metadata=md, timeout=TIMEOUT
    )
    await actions.ListActionActivity(
        actpb.ListActionActivityRequest(environment_id=env, id=action.id), metadata=md, timeout=TIMEOUT
    )

    cohorts = cgrpc.CohortsServiceStub(channel)
    static = await cohorts.CreateCohort(
        cpb.CreateCohortRequest(environment_id=env, cohort=cpb.Cohort(name="Imported", is_static=True)),
        metadata=md,
        timeout=TIMEOUT,
    )

    async def csv() -> AsyncIterator[cpb.UploadCohortMembersRequest]:
        # user-0 has events (its distinct id shows on the member); the last row is rejected.
        yield cpb.UploadCohortMembersRequest(
            environment_id=env, cohort_id=static.id, csv_chunk=b"distinct_id,person_id\nuser-0,\n,bad\n"
        )

    await cohorts.UploadCohortMembers(csv(), metadata=md, timeout=TIMEOUT)
    members = await cohorts.ListCohortPersons(
        cpb.ListCohortPersonsRequest(environment_id=env, id=static.id), metadata=md, timeout=TIMEOUT
    )
    assert members.results[0].distinct_ids == ["user-0"]
    definition = cpb.CohortFilters()
    criterion = definition.properties.values.add().values.add()
    criterion.behavioral.event = "$pageview"
    criterion.behavioral.time_value = 7
    dynamic = await cohorts.CreateCohort(
        cpb.CreateCohortRequest(environment_id=env, cohort=cpb.Cohort(name="Viewers", filters=definition)),
        metadata=md,
        timeout=TIMEOUT,
    )
    await cohorts.GetCohort(
        cpb.GetCohortRequest(environment_id=env, id=dynamic.id), metadata=md, timeout=TIMEOUT
    )
    await cohorts.ListCohorts(cpb.ListCohortsRequest(environment_id=env), metadata=md, timeout=TIMEOUT)
    await cohorts.UpdateCohort(
        cpb.UpdateCohortRequest(
            environment_id=env,
            id=dynamic.id,
            cohort=cpb.Cohort(description="described"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await cohorts.DeleteCohort(
        cpb.DeleteCohortRequest(environment_id=env, id=dynamic.id), metadata=md, timeout=TIMEOUT
    )

    dashboards = dgrpc.DashboardsServiceStub(channel)
    browser = qpb.PropertyFilter(key="$browser", value=qpb.PropertyValue(string_value="Chrome"))
    board = await dashboards.CreateDashboard(
        dpb.CreateDashboardRequest(
            environment_id=env,
            dashboard=dpb.Dashboard(
                name="Rendered board",
                tags=["demo"],
                pinned=True,
                filters=ipb.DashboardFilter(date_from="-14d", properties=[browser]),
            ),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    with_tile = await dashboards.AddDashboardTile(
        dpb.AddDashboardTileRequest(environment_id=env, dashboard_id=board.id, insight_id=insight.id),
        metadata=md,
        timeout=TIMEOUT,
    )
    await dashboards.ReorderDashboardTiles(
        dpb.ReorderDashboardTilesRequest(
            environment_id=env, dashboard_id=board.id, tile_ids=[t.id for t in with_tile.tiles]
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await dashboards.GetDashboard(dpb.GetDashboardRequest(environment_id=env, id=board.id), metadata=md, timeout=TIMEOUT)
    listed = await dashboards.ListDashboards(
        dpb.ListDashboardsRequest(environment_id=env), metadata=md, timeout=TIMEOUT
    )
    assert listed.results[0].tiles[0].insight_id == insight.id
    await dashboards.UpdateDashboard(
        dpb.UpdateDashboardRequest(
            environment_id=env,
            id=board.id,
            dashboard=dpb.Dashboard(description="described"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    layouts = struct_pb2.Struct()
    layouts.update({"sm": {"x": 0, "y": 0, "w": 6, "h": 5}})
    await dashboards.UpdateDashboardTile(
        dpb.UpdateDashboardTileRequest(
            environment_id=env,
            dashboard_id=board.id,
            tile_id=with_tile.tiles[0].id,
            tile=dpb.DashboardItem(color="blue", layouts=layouts),
        ),
        metadata=md,
        timeout=TIMEOUT,
    )
    await dashboards.RemoveDashboardTile(
        dpb.RemoveDashboardTileRequest(environment_id=env, dashboard_id=board.id, tile_id=with_tile.tiles[0].id),
        metadata=md,
        timeout=TIMEOUT,
    )
    await dashboards.DeleteDashboard(
        dpb.DeleteDashboardRequest(environment_id=env, id=board.id), metadata=md, timeout=TIMEOUT
    )
    await dashboards.ListDashboardActivity(
        dpb.ListDashboardActivityRequest(environment_id=env, id=board.id), metadata=md, timeout=TIMEOUT
    )


async def test_every_rpc_response_renders_as_protobuf_json(server: Server, tenant: Tenant) -> None:
    recorder = Recorder()
    async with grpc.aio.insecure_channel(server.target, interceptors=recorder.interceptors()) as channel:
        await _scenario(channel, tenant)

    methods = [f"/{service.full_name}/{method.name}" for service in SERVICES for method in service.methods]
    missing = [m for m in methods if not recorder.responses.get(m)]
    assert not missing, f"the scenario exercises no response of {missing}: add calls of them"
    problems = []
    for method in methods:
        for index, response in enumerate(recorder.responses[method]):
            try:
                json_format.MessageToJson(response)
            except Exception as exc:  # any failure to print is what grpcurl would show its user
                problems.append(f"{method} response {index}: {type(exc).__name__}: {exc}")
            problems.extend(
                f"{method} response {index}: {p} is a Value without a kind" for p in unset_values(response)
            )
    assert not problems, "\n".join(problems)
