"""Picks the analyzer of a cached result's kind; kinds without one get an empty analysis."""

from __future__ import annotations

from google.protobuf import json_format

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2, results_pb2
from server.domain.analysis import funnel_views, funnels, lifecycle, retention, stickiness, trends
from server.domain.metadata.textmodel import TextModel

_ANALYZED = ("trends_query", "funnels_query", "retention_query", "stickiness_query", "lifecycle_query")


def has_analyzer(query: query_pb2.QueryNode | None) -> bool:
    """Whether the insight's query is an InsightVizNode of a kind with an analyzer (as the reference,
    which analyzes InsightVizNode queries only); every kind but paths has one."""
    if query is None or query.WhichOneof("node") != "insight_viz_node":
        return False
    return query.insight_viz_node.source.WhichOneof("query") in _ANALYZED


def _cumulative(query: query_pb2.QueryNode | None) -> bool:
    """Whether a stickiness query counts actors active in at least (not exactly) k intervals."""
    if query is None:
        return False
    computed = query.insight_viz_node.source.stickiness_query.stickiness_filter.computed_as
    return computed == query_pb2.STICKINESS_COMPUTATION_CUMULATIVE


def analyze(
    result: results_pb2.InsightResult, query: query_pb2.QueryNode | None = None
) -> apb.AnalyzeInsightResponse:
    """The findings and their Markdown for a cached result (`query`: the insight's, which the result
    does not fully describe, such as whether stickiness is cumulative)."""
    which = result.WhichOneof("result")
    if which == "trends":
        found = trends.findings(result.trends)
        return apb.AnalyzeInsightResponse(markdown=trends.markdown(found), trends=found)
    if which == "funnels":
        shape = result.funnels.WhichOneof("result")
        if shape == "steps":
            steps = funnels.findings(result.funnels.steps)
            return apb.AnalyzeInsightResponse(markdown=funnels.markdown(steps), funnels=steps)
        if shape == "trends":
            rates = funnel_views.trends_findings(result.funnels.trends)
            return apb.AnalyzeInsightResponse(
                markdown=funnel_views.trends_markdown(rates), funnel_trends=rates
            )
        if shape == "time_to_convert":
            times = funnel_views.time_to_convert_findings(result.funnels.time_to_convert)
            text = funnel_views.time_to_convert_markdown(times)
            return apb.AnalyzeInsightResponse(markdown=text, time_to_convert=times)
    if which == "retention":
        kept = retention.findings(result.retention)
        text = retention.markdown(kept, retention.period_name(result.retention))
        return apb.AnalyzeInsightResponse(markdown=text, retention=kept)
    if which == "stickiness":
        sticky = stickiness.findings(result.stickiness, _cumulative(query))
        return apb.AnalyzeInsightResponse(
            markdown=stickiness.markdown(sticky, result.stickiness), stickiness=sticky
        )
    if which == "lifecycle":
        statuses = lifecycle.findings(result.lifecycle)
        return apb.AnalyzeInsightResponse(markdown=lifecycle.markdown(statuses), lifecycle=statuses)
    return apb.AnalyzeInsightResponse()


def narrated(found: apb.AnalyzeInsightResponse, model: TextModel | None) -> apb.AnalyzeInsightResponse:
    """`found` with its Markdown reworded by the operator's text model when one is configured (a
    failing or inventive model leaves the derived text); the findings are never the model's."""
    which = found.WhichOneof("findings")
    if model is None or which is None or not found.markdown:
        return found
    findings = json_format.MessageToDict(getattr(found, which), preserving_proto_field_name=True)
    out = apb.AnalyzeInsightResponse()
    out.CopyFrom(found)
    out.markdown = model.narrate(found.markdown, {which: findings})
    return out
