"""InsightsService: translates requests to the insight domain and its results back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from generated.insights.v1 import (
    common_pb2,
    insight_analysis_pb2,
    insight_metadata_pb2,
    insight_pb2,
    insight_pb2_grpc,
    insight_views_pb2,
)
from server.domain.analysis import analyze, suggestions
from server.domain.insights import DashboardContext, Insights, InsightView, ListFilters
from server.domain.metadata import InsightMetadata
from server.domain.paging import Page
from server.domain.readcontext import SAVED, ReadContext, checked, filters_from_json, in_dashboard
from server.domain.views import InsightViews
from server.errors import (
    Cancelled,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unimplemented,
)
from server.execution.refresh import PARSED_FACTOR, Computed, Execution, Refresh
from server.memory import Memo, MemoryBudget
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import common, csv_export
from server.services.convert import insights as convert

# Rendered messages are kept while they fit this share of the memory budget (see Execution's memo).
_RENDERED_SHARE, _RENDERED_MAX_ITEM = 8, 256 * 1024
# An estimate of an insight message without its result (names, query, people, dates).
_VIEW_BYTES = 4096


class InsightsServicer(insight_pb2_grpc.InsightsServiceServicer):
    """Thin: every rule lives in server.domain.insights."""

    def __init__(
        self,
        insights: Insights,
        execution: Execution,
        blocking: Blocking,
        budget: MemoryBudget | None = None,
        metadata: InsightMetadata | None = None,
    ):
        self._insights = insights
        self._metadata = metadata or InsightMetadata(insights.db)
        self._views = InsightViews(insights)
        self._execution = execution
        self._run = blocking.run
        budget = budget or MemoryBudget(64 * 1024 * 1024)
        self._rendered: Memo[tuple[Any, ...], tuple[Any, Computed | None, insight_pb2.Insight]] = Memo(
            budget, "rendered", share=budget.limit // _RENDERED_SHARE, max_item=_RENDERED_MAX_ITEM
        )

    async def _with_result(
        self,
        environment_id: int,
        view: InsightView,
        mode: int,
        default: Refresh,
        *,
        basic: bool = False,
        context: ReadContext = SAVED,
        client_query_id: str = "",
    ) -> insight_pb2.Insight:
        env = principal().environment(environment_id)
        if basic:
            # No result is computed or decoded; only when the cached one was computed is shown.
            entry = await self._execution.cached(env, view.query)
            return convert.insight(view, basic=True, last_refresh=entry.last_refresh if entry else None)
        computed = await self._execution.result(
            env,
            context.query(view.query),
            common.refresh(mode, default),
            insight_id=view.insight.id,
            client_query_id=client_query_id,
        )
        return self._render(view, computed)

    async def _saved_with_result(self, environment_id: int, view: InsightView, mode: int) -> insight_pb2.Insight:
        """A just-written insight with its result. The write is committed: a computation that fails
        now is told in query_status, since failing the call would hide the write and invite a retry
        that duplicates it (the reference answers the same way)."""
        try:
            return await self._with_result(environment_id, view, mode, Refresh.FORCE_CACHE)
        except DomainError as exc:
            return convert.insight_with_error(view, exc.message)

    async def _listed(self, environment_id: int, view: InsightView, mode: int, *, basic: bool) -> insight_pb2.Insight:
        try:
            return await self._with_result(environment_id, view, mode, Refresh.FORCE_CACHE, basic=basic)
        except (Unimplemented, FailedPrecondition, InvalidArgument, ResourceExhausted, Cancelled) as exc:
            return convert.insight_with_error(view, exc.message)

    def _render(self, view: InsightView, computed: Computed | None) -> insight_pb2.Insight:
        """The Insight message, reused while the same cached view meets the same cached answer.

        A hot read of an insight with a large cached result would otherwise rebuild a large
        message per call. Messages are returned read-only (gRPC only serializes them); a live run
        status is never reused.
        """
        if computed is not None and computed.status is not None:
            return convert.insight(view, computed)
        key = (view.insight.id, view.last_viewed_at, id(computed))
        found = self._rendered.get(key)
        if found is not None and found[0] is view.insight and found[1] is computed:
            return found[2]
        message = convert.insight(view, computed)
        # The result dominates the message: its serialized size stands for the whole (cheap to know).
        size = (computed.size if computed is not None else 0) * PARSED_FACTOR + _VIEW_BYTES
        self._rendered.put(key, (view.insight, computed, message), size)
        return message

    async def ListInsights(
        self, request: insight_pb2.ListInsightsRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.ListInsightsResponse:
        results, response = await self._list(request)
        if request.format == common_pb2.RESPONSE_FORMAT_CSV:
            response.csv = convert.insights_csv(results)
        return response

    async def _list(
        self, request: insight_pb2.ListInsightsRequest
    ) -> tuple[list[insight_pb2.Insight], insight_pb2.ListInsightsResponse]:
        """The ListInsights answer without its CSV rendering (ExportInsights streams that)."""
        filters = ListFilters(
            basic=request.basic,
            created_by=list(request.created_by),
            created_date_from=request.created_date_from,
            created_date_to=request.created_date_to,
            dashboards=list(request.dashboards),
            date_from=request.date_from,
            date_to=request.date_to,
            favorited=request.favorited,
            insight=convert.INSIGHT_TYPES.get(request.insight, ""),
            last_viewed_date_from=request.last_viewed_date_from,
            last_viewed_date_to=request.last_viewed_date_to,
            limit=request.limit,
            offset=request.offset,
            saved=request.saved if request.HasField("saved") else None,
            search=request.search,
            short_id=request.short_id,
            tags=list(request.tags),
            user=request.user,
            order=request.order,
        )
        page = await self._run(self._insights.list_insights, principal(), request.environment_id, filters)
        # Concurrently (runs are bounded below), and an insight that cannot compute shows its error
        # in its own query_status instead of failing the page.
        results = list(
            await asyncio.gather(
                *(
                    self._listed(request.environment_id, view, request.refresh, basic=request.basic)
                    for view in page.items
                )
            )
        )
        response = insight_pb2.ListInsightsResponse(count=page.count, results=results)
        common.offsets(page, response)
        return results, response

    async def CreateInsight(
        self, request: insight_pb2.CreateInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.Insight:
        refresh = common.refresh(request.refresh, Refresh.FORCE_CACHE)
        if request.insight.HasField("query"):
            self._execution.require_runner(request.insight.query, refresh, "insight.")
        view = await self._run(
            self._insights.create,
            principal(),
            request.environment_id,
            convert.insight_fields(request.insight),
            request.request_id,
        )
        return await self._saved_with_result(request.environment_id, view, request.refresh)

    async def GetInsight(
        self, request: insight_pb2.GetInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.Insight:
        lookup = convert.lookup(request)
        # Refused before the read is recorded: a bad request changes nothing.
        read = checked(
            request.filters_override if request.HasField("filters_override") else None, request.variables_override
        )
        board: DashboardContext | None = None
        if request.HasField("from_dashboard"):
            board = await self._run(
                self._insights.dashboard_context, principal(), request.environment_id, request.from_dashboard, lookup
            )
            read = in_dashboard(read, board.filters, board.tile_filters)
        # A hot read is answered from memory on the event loop, without a thread hop.
        view = self._insights.get_cached(principal(), request.environment_id, lookup)
        if view is None:
            view = await self._run(self._insights.get, principal(), request.environment_id, lookup)
        message = await self._with_result(
            request.environment_id,
            view,
            request.refresh,
            Refresh.FORCE_CACHE,
            context=read,
            client_query_id=request.client_query_id,
        )
        if board is None or (board.color is None and board.layouts is None):
            return message
        # The rendered message may be shared by later reads (see _render): the tile's look goes on a copy.
        shown = insight_pb2.Insight()
        shown.CopyFrom(message)
        if board.color is not None:
            shown.color = board.color
        if board.layouts is not None:
            shown.layouts.update(board.layouts)
        return shown

    async def UpdateInsight(
        self, request: insight_pb2.UpdateInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.Insight:
        paths = common.update_paths(request, request.insight)
        refresh = common.refresh(request.refresh, Refresh.FORCE_CACHE)
        if refresh != Refresh.FORCE_CACHE:
            # Refused before the write when the answer could not be computed: the call changes nothing.
            if "query" in paths:
                self._execution.require_runner(request.insight.query, refresh, "insight.")
            else:
                current = await self._run(
                    self._insights.get, principal(), request.environment_id, convert.lookup(request)
                )
                self._execution.require_runner(current.query, refresh, "insight.")
        view = await self._run(
            self._insights.update,
            principal(),
            request.environment_id,
            convert.lookup(request),
            convert.insight_fields(request.insight),
            paths,
        )
        return await self._saved_with_result(request.environment_id, view, request.refresh)

    async def DeleteInsight(
        self, request: insight_pb2.DeleteInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.Insight:
        view = await self._run(
            self._insights.delete, principal(), request.environment_id, convert.lookup(request)
        )
        return convert.insight(view)

    async def ListInsightActivity(
        self, request: insight_pb2.ListInsightActivityRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.ListInsightActivityResponse:
        lookup = convert.lookup(request) if request.WhichOneof("lookup") else None
        page = await self._run(
            self._insights.activity, principal(), request.environment_id, lookup, request.page, request.limit
        )
        return common.activity_page(insight_pb2.ListInsightActivityResponse, page)

    async def BulkUpdateInsightTags(
        self, request: insight_pb2.BulkUpdateInsightTagsRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.BulkUpdateInsightTagsResponse:
        result = await self._run(
            self._insights.bulk_update_tags,
            principal(),
            request.environment_id,
            list(request.ids),
            convert.BULK_ACTIONS.get(request.action, ""),
            list(request.tags),
        )
        return insight_pb2.BulkUpdateInsightTagsResponse(
            updated=[insight_pb2.TaggedInsight(id=i, tags=tags) for i, tags in result.updated],
            skipped=[insight_pb2.SkippedInsight(id=i, reason=reason) for i, reason in result.skipped],
        )

    async def GenerateInsightMetadata(
        self, request: insight_metadata_pb2.GenerateInsightMetadataRequest, context: grpc.aio.ServicerContext
    ) -> insight_metadata_pb2.GenerateInsightMetadataResponse:
        found = await self._run(
            self._metadata.generate,
            principal(),
            request.environment_id,
            request.query if request.HasField("query") else None,
        )
        return insight_metadata_pb2.GenerateInsightMetadataResponse(name=found.name, description=found.description)

    async def MarkInsightsViewed(
        self, request: insight_views_pb2.MarkInsightsViewedRequest, context: grpc.aio.ServicerContext
    ) -> insight_views_pb2.MarkInsightsViewedResponse:
        marked = await self._run(
            self._views.mark_viewed, principal(), request.environment_id, list(request.insight_ids)
        )
        return insight_views_pb2.MarkInsightsViewedResponse(viewed_ids=marked.viewed, not_found_ids=marked.not_found)

    async def _basic_page(self, environment_id: int, page: Page[InsightView]) -> insight_pb2.ListInsightsResponse:
        """A page of insights in the basic shape (no result, the cached one's last_refresh), plus the
        caller's last_viewed_at: these lists are about views, so the time they are ordered by shows."""
        results = []
        for view in page.items:
            message = await self._with_result(environment_id, view, 0, Refresh.FORCE_CACHE, basic=True)
            if view.last_viewed_at is not None:
                message.last_viewed_at.FromDatetime(view.last_viewed_at)
            results.append(message)
        response = insight_pb2.ListInsightsResponse(count=page.count, results=results)
        common.offsets(page, response)
        return response

    async def ListMyLastViewedInsights(
        self, request: insight_views_pb2.ListMyLastViewedInsightsRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.ListInsightsResponse:
        views = await self._run(self._views.last_viewed, principal(), request.environment_id)
        return await self._basic_page(request.environment_id, Page(views, len(views), len(views), 0))

    async def ListTrendingInsights(
        self, request: insight_views_pb2.ListTrendingInsightsRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.ListInsightsResponse:
        page = await self._run(
            self._views.trending, principal(), request.environment_id, request.days, request.limit, request.offset
        )
        return await self._basic_page(request.environment_id, page)

    async def ExportInsights(
        self, request: insight_pb2.ExportInsightsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[insight_views_pb2.CsvChunk]:
        if request.list.format not in (common_pb2.RESPONSE_FORMAT_UNSPECIFIED, common_pb2.RESPONSE_FORMAT_CSV):
            raise InvalidArgument("an export is CSV: leave list.format unset or set it to CSV", field="list.format")
        results, _ = await self._list(request.list)
        for data in csv_export.chunks(convert.insights_csv_rows(results)):
            yield insight_views_pb2.CsvChunk(data=data)

    async def ExportInsightResult(
        self, request: insight_views_pb2.ExportInsightResultRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[insight_views_pb2.CsvChunk]:
        lookup = convert.lookup(request)
        # Refused before the read is recorded, as GetInsight: a bad request changes nothing.
        read = checked(filters_from_json(request.filters_override, "filters_override"), request.variables_override)
        if request.HasField("from_dashboard"):
            board = await self._run(
                self._insights.dashboard_context, principal(), request.environment_id, request.from_dashboard, lookup
            )
            read = in_dashboard(read, board.filters, board.tile_filters)
        view = await self._run(self._insights.get, principal(), request.environment_id, lookup)
        if view.query is None:
            raise FailedPrecondition("the insight has no query, so no result to export", reason="NO_QUERY")
        env = principal().environment(request.environment_id)
        # The effective query keys the cache: the dashboard's (and the overrides') own entry.
        computed = await self._execution.result(
            env,
            read.query(view.query),
            common.refresh(request.refresh, Refresh.FORCE_CACHE),
            insight_id=view.insight.id,
        )
        if computed is None or computed.result is None:
            running = computed is not None and computed.status is not None
            raise FailedPrecondition(
                "the insight's result is being computed: export it when the run has finished"
                if running
                else "the insight has no cached result: compute it first, or export with refresh BLOCKING",
                reason="RESULT_NOT_READY" if running else "NO_CACHED_RESULT",
            )
        # Rendered off the event loop: a large result is many rows of Python.
        result = computed.result
        pieces = await self._run(lambda: list(csv_export.chunks(csv_export.result_rows(result))))
        for data in pieces:
            yield insight_views_pb2.CsvChunk(data=data)

    async def _view(self, environment_id: int, request: Any) -> InsightView:
        """The live insight a request looks up (a read: the caller's view is recorded, as GetInsight does)."""
        lookup = convert.lookup(request)
        view = self._insights.get_cached(principal(), environment_id, lookup)
        if view is None:
            view = await self._run(self._insights.get, principal(), environment_id, lookup)
        return view

    async def AnalyzeInsight(
        self, request: insight_analysis_pb2.AnalyzeInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_analysis_pb2.AnalyzeInsightResponse:
        view = await self._view(request.environment_id, request)
        if not analyze.has_analyzer(view.query):
            return insight_analysis_pb2.AnalyzeInsightResponse()
        env = principal().environment(request.environment_id)
        # FORCE_CACHE only reads the cache: the analysis never starts a computation.
        computed = await self._execution.result(env, view.query, Refresh.FORCE_CACHE, insight_id=view.insight.id)
        if computed is None or computed.result is None:
            raise FailedPrecondition(
                "the insight has no cached result: compute it first (GetInsight with refresh BLOCKING)",
                reason="NO_CACHED_RESULT",
            )
        # Off the event loop: the detectors score every bucket of every series (large for hourly ranges).
        found = await self._run(analyze.analyze, computed.result, view.query)
        model = self._metadata.text_model
        if model is None:
            return found
        # The optional text model is an HTTP call (bounded by its timeout): off the event loop too.
        return await self._run(analyze.narrated, found, model)

    async def GetInsightSuggestions(
        self, request: insight_analysis_pb2.GetInsightSuggestionsRequest, context: grpc.aio.ServicerContext
    ) -> insight_analysis_pb2.GetInsightSuggestionsResponse:
        # Refused before the read is recorded: a bad request changes nothing.
        suggestions.check_context(request.context)
        view = await self._view(request.environment_id, request)
        found = suggestions.suggest(view.query, request.context)
        return insight_analysis_pb2.GetInsightSuggestionsResponse(suggestions=found)
