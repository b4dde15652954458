"""Dashboard-shaped overrides merged into a saved query: the reference's merge, the query's own form kept."""

from __future__ import annotations

import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from server.errors import InvalidArgument
from server.queries import overrides

AND = qpb.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_AND
OR = qpb.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_OR


def _f(key: str) -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key=key,
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="x"),
    )


def _trends(**fields: object) -> qpb.QueryNode:
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
        date_range=qpb.DateRange(date_from="-30d", date_to="-1d", explicit_date=True),
        **fields,  # type: ignore[arg-type]
    )
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(trends_query=query)))


def _source(node: qpb.QueryNode | None) -> qpb.TrendsQuery:
    assert node is not None
    return node.insight_viz_node.source.trends_query


def test_a_date_bound_replaces_the_whole_range_and_the_saved_query_is_untouched() -> None:
    saved = _trends()
    merged = overrides.apply(saved, ipb.DashboardFilter(date_from="-7d"), "filters_override")
    assert _source(merged).date_range == qpb.DateRange(date_from="-7d")
    assert _source(saved).date_range.date_from == "-30d"


def test_properties_join_a_flat_list_and_an_and_group_in_place() -> None:
    listed = overrides.apply(
        _trends(properties=qpb.Properties(list=qpb.PropertyFilterList(values=[_f("a")]))),
        ipb.DashboardFilter(properties=[_f("b")]),
        "filters_override",
    )
    assert [p.key for p in _source(listed).properties.list.values] == ["a", "b"]
    group = qpb.PropertyGroupFilter(
        type=AND,
        values=[qpb.PropertyGroupFilterValue(type=OR, values=[qpb.PropertyGroupItem(filter=_f("a"))])],
    )
    grouped = overrides.apply(
        _trends(properties=qpb.Properties(group=group)), ipb.DashboardFilter(properties=[_f("b")]), "f"
    )
    values = _source(grouped).properties.group.values
    assert _source(grouped).properties.group.type == AND
    assert [v.type for v in values] == [OR, AND] and values[1].values[0].filter.key == "b"


def test_an_or_group_is_nested_so_the_override_narrows_every_branch() -> None:
    either = qpb.PropertyGroupFilter(
        type=OR,
        values=[
            qpb.PropertyGroupFilterValue(type=AND, values=[qpb.PropertyGroupItem(filter=_f("a"))]),
            qpb.PropertyGroupFilterValue(type=AND, values=[qpb.PropertyGroupItem(filter=_f("b"))]),
        ],
    )
    merged = overrides.apply(
        _trends(properties=qpb.Properties(group=either)), ipb.DashboardFilter(properties=[_f("c")]), "f"
    )
    top = _source(merged).properties.group
    assert top.type == AND and len(top.values) == 2
    assert top.values[0].type == OR
    assert [item.group.values[0].filter.key for item in top.values[0].values] == ["a", "b"]
    assert top.values[1].values[0].filter.key == "c"


def test_a_part_the_kind_lacks_is_refused_naming_it() -> None:
    sticky = qpb.QueryNode(
        insight_viz_node=qpb.InsightVizNode(
            source=qpb.InsightSource(stickiness_query=qpb.StickinessQuery(series=[]))
        )
    )
    breakdown = qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))
    with pytest.raises(InvalidArgument) as refused:
        overrides.apply(sticky, ipb.DashboardFilter(breakdown_filter=breakdown), "filters_override")
    assert refused.value.violations[0].field == "filters_override.breakdown_filter"


def test_an_empty_override_changes_nothing() -> None:
    saved = _trends()
    assert overrides.apply(saved, ipb.DashboardFilter(), "filters_override") is saved
