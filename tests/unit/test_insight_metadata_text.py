"""GenerateInsightMetadata's derived text: the exact name and description of fixed queries of every kind."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from generated.insights.v1 import query_pb2 as qpb
from server.domain.metadata import sql
from server.domain.metadata.kinds import action_ids, generate
from server.errors import InvalidArgument

# Stored action names of the environment the queries are described in (action 7 has none).
ACTIONS = {9: "Checkout"}

GOLDEN = [
    pytest.param(
        {'insight_viz_node': {'source': {'trends_query': {'series': [{'events_node': {'event': '$pageview'}}], 'breakdown_filter': {'breakdown': {'string_value': '$browser'}}}}}},
        'Pageview count by browser, last 7 days',
        'Pageview count per day, broken down by browser, over the last 7 days.',
        id='trends_breakdown_default_range',
    ),
    pytest.param(
        {'trends_query': {'series': [{'events_node': {'event': '$pageview', 'math': 'MATH_TYPE_DAU'}}, {'actions_node': {'id': 7, 'math': 'MATH_TYPE_AVG', 'math_property': 'price'}}], 'trends_filter': {'formula': 'A / B', 'display': 'CHART_DISPLAY_TYPE_BOLD_NUMBER'}, 'date_range': {'date_from': '-30d'}, 'compare_filter': {'compare': True}, 'filter_test_accounts': True, 'properties': {'list': {'values': [{'key': '$browser', 'value': {'string_value': 'Chrome'}, 'operator': 'PROPERTY_OPERATOR_EXACT', 'type': 'PROPERTY_FILTER_TYPE_EVENT'}]}}}},
        'Pageview unique users / Action 7 average of price, last 30 days, compared with the previous period',
        'Pageview unique users / Action 7 average of price per day, over the last 30 days, compared with the previous period. Formula A / B, where A is Pageview unique users and B is Action 7 average of price. Filtered where browser = Chrome and excluding internal and test accounts. Shown as a single number.',
        id='trends_formula_compare_filters_display',
    ),
    pytest.param(
        {'funnels_query': {'series': [{'events_node': {'event': 'signup'}}, {'events_node': {'event': 'purchase'}}]}},
        'Signup → Purchase conversion, 14-day window',
        'Share of users who did Signup then Purchase within 14 days, over the last 7 days.',
        id='funnel_default',
    ),
    pytest.param(
        {'funnels_query': {'series': [{'events_node': {'event': 'signup'}}, {'actions_node': {'id': 9}}], 'funnels_filter': {'funnel_order_type': 'FUNNEL_ORDER_TYPE_UNORDERED', 'funnel_viz_type': 'FUNNEL_VIZ_TYPE_TIME_TO_CONVERT', 'funnel_window_interval': 2, 'funnel_window_interval_unit': 'FUNNEL_CONVERSION_WINDOW_TIME_UNIT_HOUR', 'exclusions': [{'events_node': {'event': '$pageleave', 'funnel_from_step': 0, 'funnel_to_step': 1}}]}, 'date_range': {'date_from': '2024-01-01', 'date_to': '2024-01-31'}}},
        'Signup → Checkout time to convert, 2-hour window, any order',
        'How long users took to go from Signup to Checkout (within 2 hours), in any order, from 2024-01-01 to 2024-01-31. Excluding users who did Pageleave between steps 1 and 2.',
        id='funnel_time_to_convert_any_order',
    ),
    pytest.param(
        {'retention_query': {'retention_filter': {'period': 'RETENTION_PERIOD_WEEK', 'target_entity': {'id': {'string_value': 'signup'}, 'type': 'events'}, 'returning_entity': {'id': {'int_value': 9}, 'type': 'actions'}, 'retention_type': 'RETENTION_TYPE_FIRST_TIME', 'total_intervals': 8}}},
        'Signup → Checkout weekly retention, 8 weeks',
        'Of the users who did Signup for the first time in each of 8 weeks, the share who did Checkout in each following week.',
        id='retention_first_time_to_action',
    ),
    pytest.param(
        {'stickiness_query': {'series': [{'events_node': {'event': '$pageview'}}], 'date_range': {'date_from': 'mStart'}}},
        'Pageview stickiness, this month',
        'How many users did Pageview on N days of the period, for each N, for this month.',
        id='stickiness_this_month',
    ),
    pytest.param(
        {'lifecycle_query': {'series': [{'events_node': {'event': '$pageview'}}], 'interval': 'INTERVAL_TYPE_WEEK', 'date_range': {'date_from': '-3m'}, 'lifecycle_filter': {'toggled_lifecycles': ['LIFECYCLE_TOGGLE_NEW', 'LIFECYCLE_TOGGLE_DORMANT']}}},
        'Pageview lifecycle, last 3 months',
        'New, returning, resurrecting and dormant users of Pageview per week, over the last 3 months. Showing new and dormant only.',
        id='lifecycle_toggled',
    ),
    pytest.param(
        {'paths_query': {'paths_filter': {'include_event_types': ['PATH_TYPE_PAGEVIEW'], 'start_point': '/home', 'end_point': '/checkout', 'step_limit': 4, 'exclude_events': ['/admin']}}},
        'Pageview paths from /home to /checkout, last 7 days',
        'The most common sequences of up to 4 steps through pageviews from /home to /checkout, over the last 7 days. Ignoring /admin.',
        id='paths_start_and_end',
    ),
    pytest.param(
        {'paths_query': {'funnel_paths_filter': {'funnel_source': {'series': [{'events_node': {'event': 'signup'}}, {'events_node': {'event': 'purchase'}}]}, 'funnel_path_type': 'funnel_path_before_step', 'funnel_step': 2}}},
        'Event paths before step 2 of Signup → Purchase, last 7 days',
        'The most common sequences of up to 5 steps through events, of users before step 2 of the funnel Signup → Purchase, over the last 7 days.',
        id='paths_before_funnel_step',
    ),
    pytest.param(
        {'insight_actors_query': {'source': {'paths_query': {'paths_filter': {'include_event_types': ['PATH_TYPE_PAGEVIEW'], 'path_start_key': '1_/home', 'path_end_key': '2_/pricing'}}}}},
        'Persons who went from 1_/home to 2_/pricing in Pageview paths, last 7 days',
        'The persons who went from 1_/home to 2_/pricing in: The most common sequences of up to 5 steps through pageviews, over the last 7 days.',
        id='actors_of_a_path_edge',
    ),
    pytest.param(
        {'insight_actors_query': {'source': {'paths_query': {'paths_filter': {'path_dropoff_key': '3_/cart'}}}}},
        'Persons who dropped off at 3_/cart in Event paths, last 7 days',
        'The persons who dropped off at 3_/cart in: The most common sequences of up to 5 steps through events, over the last 7 days.',
        id='actors_dropping_off',
    ),
    pytest.param(
        {'hogql_query': {'query': 'SELECT event, count() AS views FROM events GROUP BY event ORDER BY views DESC'}},
        'SQL: event and views from events',
        'SQL query selecting event and views from events, grouped by event.',
        id='hogql_columns_and_groups',
    ),
    pytest.param(
        {'data_visualization_node': {'source': {'query': 'select toStartOfDay(timestamp) as day, count() from events e join persons p on e.person_id = p.id group by day'}, 'display': 'CHART_DISPLAY_TYPE_ACTIONS_BAR'}},
        'SQL: day and count() from events and persons',
        'SQL query selecting day and count() from events and persons, grouped by day. Shown as a bar chart.',
        id='sql_chart_bar',
    ),
    pytest.param(
        {'trends_query': {'series': [{'events_node': {'event': 'purchase', 'math': 'MATH_TYPE_SUM', 'math_property': 'revenue'}}, {'events_node': {'event': '$pageview', 'math': 'MATH_TYPE_WEEKLY_ACTIVE'}}, {'events_node': {'math': 'MATH_TYPE_AVG_COUNT_PER_ACTOR'}}, {'events_node': {'event': 'signup', 'custom_name': 'Signups'}}], 'interval': 'INTERVAL_TYPE_WEEK', 'date_range': {'date_from': '2024-01-01', 'date_to': '2024-03-31'}}},
        'Purchase sum of revenue, Pageview weekly active users, All events average count per user and 1 more, 2024-01-01 to 2024-03-31',
        'Purchase sum of revenue, Pageview weekly active users, All events average count per user and Signups count per week, from 2024-01-01 to 2024-03-31.',
        id='trends_math_and_dates',
    ),
    pytest.param(
        {'trends_query': {'series': [{'group_node': {'operator': 'FILTER_LOGICAL_OPERATOR_OR', 'nodes': [{'events_node': {'event': 'signup'}}, {'actions_node': {'id': 9}}]}}], 'compare_filter': {'compare': True, 'compare_to': '-1y'}, 'breakdown_filter': {'breakdowns': [{'property': {'string_value': '$browser'}, 'type': 'BREAKDOWN_TYPE_EVENT'}, {'property': {'string_value': 'plan'}, 'type': 'BREAKDOWN_TYPE_PERSON'}]}, 'date_range': {'date_from': 'all'}}},
        'Signup or Checkout count by browser and plan, all time, compared with 1 year earlier',
        'Signup or Checkout count per day, broken down by browser and plan, over all time, compared with 1 year earlier.',
        id='trends_compare_to_and_breakdowns',
    ),
    pytest.param(
        {'trends_query': {'series': [{'events_node': {'event': 'purchase'}}, {'events_node': {'event': '$pageview', 'math': 'MATH_TYPE_DAU'}}], 'trends_filter': {'formula_nodes': [{'formula': 'A / B', 'custom_name': 'Purchases per user'}, {'formula': 'A * 100'}]}, 'breakdown_filter': {'breakdown': {'list_value': {'values': [{'int_value': 4}]}}, 'breakdown_type': 'BREAKDOWN_TYPE_COHORT'}}},
        'Purchases per user and Purchase count * 100 by cohort, last 7 days',
        'Purchases per user and Purchase count * 100 per day, broken down by cohort, over the last 7 days. Formulas A / B and A * 100, where A is Purchase count and B is Pageview unique users.',
        id='trends_formula_nodes',
    ),
    pytest.param(
        {'insight_viz_node': {'source': {'funnels_query': {'series': [{'events_node': {'event': '$pageview', 'custom_name': 'Landing'}}, {'events_node': {'event': 'signup'}}, {'events_node': {'event': 'purchase'}}], 'funnels_filter': {'funnel_order_type': 'FUNNEL_ORDER_TYPE_STRICT', 'funnel_viz_type': 'FUNNEL_VIZ_TYPE_TRENDS', 'funnel_window_interval': 1, 'funnel_window_interval_unit': 'FUNNEL_CONVERSION_WINDOW_TIME_UNIT_WEEK'}, 'breakdown_filter': {'breakdown': {'string_value': '$geoip_country_code'}}, 'aggregation_group_type_index': 0, 'date_range': {'date_from': '-30d'}}}}},
        'Landing → Signup → Purchase conversion trend by geoip country code, 1-week window, strict order',
        'Share of groups who did Landing then Signup then Purchase within 1 week, per day, with no other event between steps, broken down by geoip country code, over the last 30 days.',
        id='funnel_strict_trends_by',
    ),
    pytest.param(
        {'retention_query': {'retention_filter': {'period': 'RETENTION_PERIOD_DAY', 'target_entity': {'id': {'string_value': '$pageview'}, 'type': 'events'}, 'cumulative': True}, 'date_range': {'date_from': '-14d'}}},
        'Pageview daily retention, 7 days',
        'Of the users who did Pageview in each of 7 days, the share who did Pageview on or after each following day. Cohorts over the last 14 days.',
        id='retention_same_event_cumulative',
    ),
    pytest.param(
        {'stickiness_query': {'series': [{'events_node': {'event': '$pageview'}}, {'actions_node': {'id': 9}}], 'stickiness_filter': {'computed_as': 'STICKINESS_COMPUTATION_CUMULATIVE', 'stickiness_criteria': {'operator': 'gte', 'value': 3}}, 'date_range': {'date_from': '-1m'}}},
        'Pageview and Checkout stickiness, last month',
        'How many users did Pageview or Checkout on at least N days of the period, for each N (a day counts when it was done at least 3 times), over the last month.',
        id='stickiness_criteria',
    ),
    pytest.param(
        {'paths_query': {'paths_filter': {'include_event_types': ['PATH_TYPE_SCREEN', 'PATH_TYPE_CUSTOM_EVENT'], 'start_point': 'Home'}, 'date_range': {'date_from': '-1dStart', 'date_to': '-1dEnd'}}},
        'Screen and Custom event paths from Home, yesterday',
        'The most common sequences of up to 5 steps through screens and custom events from Home, for yesterday.',
        id='paths_screens_start',
    ),
    pytest.param(
        {'data_visualization_node': {'source': {'query': 'SELECT count() FROM events', 'name': 'Total events', 'variables': {'a': {}, 'b': {}}}}},
        'Total events',
        'SQL query selecting count() from events. Uses the variables a and b.',
        id='sql_named',
    ),
    pytest.param(
        {'lifecycle_query': {'series': [{'events_node': {'event': '$pageview'}}], 'properties': {'group': {'type': 'FILTER_LOGICAL_OPERATOR_OR', 'values': [{'type': 'FILTER_LOGICAL_OPERATOR_AND', 'values': [{'filter': {'key': '$browser', 'value': {'string_value': 'Chrome'}}}]}, {'type': 'FILTER_LOGICAL_OPERATOR_AND', 'values': [{'filter': {'key': '$os', 'value': {'string_value': 'Mac'}}}]}]}}}},
        'Pageview lifecycle, last 7 days',
        'New, returning, resurrecting and dormant users of Pageview per day, over the last 7 days. Filtered where any of several property conditions holds.',
        id='properties_or_group',
    ),
]


def _query(data: dict[str, Any]) -> qpb.QueryNode:
    return json_format.ParseDict(data, qpb.QueryNode())


@pytest.mark.parametrize(("query", "name", "description"), GOLDEN)
def test_the_derived_text_of_each_kind(query: dict[str, Any], name: str, description: str) -> None:
    found = generate(_query(query), ACTIONS)
    assert (found.name, found.description) == (name, description)


def test_the_text_is_the_same_for_the_same_query() -> None:
    for param in GOLDEN:
        query = param.values[0]
        assert generate(_query(query), ACTIONS) == generate(_query(query), dict(ACTIONS))


def test_a_missing_query_names_the_field_with_the_reference_message() -> None:
    with pytest.raises(InvalidArgument) as err:
        generate(None, ACTIONS)
    assert err.value.violations[0].field == "query"
    assert "Missing 'query' field in request body" in err.value.message


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (qpb.QueryNode(), "query"),
        (qpb.QueryNode(insight_viz_node=qpb.InsightVizNode()), "query.insight_viz_node.source"),
        (
            qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode()),
            "query.data_visualization_node.source",
        ),
        (
            qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode(source=qpb.HogQLQuery(query=""))),
            "query.data_visualization_node.source.query",
        ),
        (
            qpb.QueryNode(insight_actors_query=qpb.InsightActorsQuery()),
            "query.insight_actors_query.source",
        ),
    ],
)
def test_a_query_with_nothing_to_describe_is_invalid(query: qpb.QueryNode, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        generate(query, ACTIONS)
    assert err.value.violations[0].field == field
    assert "Invalid query format" in err.value.message


def test_every_action_a_query_names_is_collected() -> None:
    funnel = {
        "series": [{"actions_node": {"id": 1}}, {"group_node": {"nodes": [{"actions_node": {"id": 2}}]}}],
        "funnels_filter": {"exclusions": [{"actions_node": {"id": 3}}]},
    }
    assert action_ids(_query({"funnels_query": funnel})) == {1, 2, 3}
    assert action_ids(_query({"paths_query": {"funnel_paths_filter": {"funnel_source": funnel}}})) == {1, 2, 3}
    retention = {"retention_filter": {"target_entity": {"id": {"int_value": 4}, "type": "actions"}}}
    assert action_ids(_query({"retention_query": retention})) == {4}
    assert action_ids(_query({"trends_query": {"series": [{"events_node": {"event": "x"}}]}})) == set()


def test_the_sql_outline_reads_columns_tables_and_groups_outside_subqueries() -> None:
    shape = sql.shape(
        "SELECT e.event AS name, count() FROM (SELECT event FROM events) AS e "
        "LEFT JOIN persons p ON e.person_id = p.id WHERE extract(day FROM now()) > 1 GROUP BY name, e.x LIMIT 5"
    )
    assert shape.columns == ["name", "count()"]
    assert shape.tables == ["events", "persons"]
    assert shape.grouped == ["name", "e.x"]


def test_every_query_node_kind_has_a_describer() -> None:
    # A kind added to QueryNode without a describer would fail with a KeyError (INTERNAL): each
    # member, even empty, is described or refused naming its field.
    for field in qpb.QueryNode.DESCRIPTOR.oneofs_by_name["node"].fields:
        query = qpb.QueryNode()
        getattr(query, field.name).SetInParent()
        try:
            generate(query, ACTIONS)
        except InvalidArgument as err:
            assert err.violations[0].field.startswith("query")
