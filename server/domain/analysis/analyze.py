"""Picks the analyzer of a cached result's kind; kinds without one get an empty analysis."""

from __future__ import annotations

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2, results_pb2
from server.domain.analysis import funnels, retention, trends


def has_analyzer(query: query_pb2.QueryNode | None) -> bool:
    """Whether the insight's query is an InsightVizNode of a kind with an analyzer (as the reference,
    which analyzes InsightVizNode queries only); funnels only in the steps visualisation."""
    if query is None or query.WhichOneof("node") != "insight_viz_node":
        return False
    source = query.insight_viz_node.source
    which = source.WhichOneof("query")
    if which == "funnels_query":
        viz = source.funnels_query.funnels_filter.funnel_viz_type
        return viz in (query_pb2.FUNNEL_VIZ_TYPE_UNSPECIFIED, query_pb2.FUNNEL_VIZ_TYPE_STEPS)
    return which in ("trends_query", "retention_query")


def analyze(result: results_pb2.InsightResult) -> apb.AnalyzeInsightResponse:
    """The findings and their Markdown for a cached result."""
    which = result.WhichOneof("result")
    if which == "trends":
        found = trends.findings(result.trends)
        return apb.AnalyzeInsightResponse(markdown=trends.markdown(found), trends=found)
    if which == "funnels" and result.funnels.WhichOneof("result") == "steps":
        steps = funnels.findings(result.funnels.steps)
        return apb.AnalyzeInsightResponse(markdown=funnels.markdown(steps), funnels=steps)
    if which == "retention":
        kept = retention.findings(result.retention)
        text = retention.markdown(kept, retention.period_name(result.retention))
        return apb.AnalyzeInsightResponse(markdown=text, retention=kept)
    return apb.AnalyzeInsightResponse()
