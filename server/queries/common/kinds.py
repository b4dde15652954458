"""Classifies query nodes: the insight type a list filter matches, and the kind names."""

from __future__ import annotations

from generated.insights.v1 import query_pb2

# The oneof member of an InsightSource or a bare QueryNode → the list filter's insight type.
_INSIGHT_TYPES = {
    "trends_query": "TRENDS",
    "funnels_query": "FUNNELS",
    "retention_query": "RETENTION",
    "paths_query": "PATHS",
    "stickiness_query": "STICKINESS",
    "lifecycle_query": "LIFECYCLE",
}


def insight_type(query: query_pb2.QueryNode | None) -> str | None:
    """TRENDS, FUNNELS, ... for an InsightVizNode; SQL for a DataVisualizationNode; JSON otherwise.

    A bare (unwrapped) query counts as JSON, as in the reference, where only wrapped queries
    match a product-analytics type.
    """
    if query is None:
        return None
    node = query.WhichOneof("node")
    if node is None:
        return None
    if node == "insight_viz_node":
        member = query.insight_viz_node.source.WhichOneof("query")
        return _INSIGHT_TYPES.get(member or "", "JSON")
    if node == "data_visualization_node":
        return "SQL"
    return "JSON"
