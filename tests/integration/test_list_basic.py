"""ListInsights with `basic`: the reference's basic serializer's fields, and no others."""

from __future__ import annotations

from generated.insights.v1 import common_pb2
from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, Tenant, trends_viz

# The reference's basic serializer (insights-api-behaviour.md §1.1), less `filters` and
# `refreshing`, which this API has no fields for.
BASIC = {
    "id",
    "short_id",
    "name",
    "derived_name",
    "favorited",
    "query",
    "dashboards",
    "dashboard_tiles",
    "description",
    "last_refresh",
    "saved",
    "tags",
    "updated_at",
    "created_by",
    "created_at",
    "last_modified_at",
    "user_access_level",
}
# What the full list shows of an insight with every field set and a cached result, beyond BASIC.
# (Never set on a list item: `deleted`, an input-only folder, a running status, table columns
# and types, a sample flag, alert summaries.)
FULL_ONLY = {
    "order",
    "last_modified_by",
    "last_viewed_at",
    "is_cached",
    "timezone",
    "effective_restriction_level",
    "effective_privilege_level",
    "result",
    "has_more",
    "hogql",
    "cache_target_age",
    "next_allowed_client_refresh",
    "resolved_date_range",
}


def present(message: ipb.Insight) -> set[str]:
    return {field.name for field, _ in message.ListFields()}


async def test_basic_keeps_exactly_the_reference_basic_fields(api: Api, tenant: Tenant) -> None:
    dashboard = tenant.add_dashboard()
    created = await api.create(
        name="Views",
        derived_name="Pageview count",
        description="every pageview",
        query=trends_viz(),
        order=3,
        dashboards=[dashboard],
        tags=["web"],
        favorited=True,
        saved=True,
    )
    # Viewed, and its result computed and cached.
    request = ipb.GetInsightRequest(
        environment_id=tenant.environment_id, id=created.id, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
    )
    computed = await api.stub.GetInsight(request, metadata=api.metadata, timeout=30)
    assert computed.HasField("result") and computed.HasField("last_refresh")

    [full] = (await api.list()).results
    [basic] = (await api.list(basic=True)).results

    assert present(full) == BASIC | FULL_ONLY
    assert present(basic) == BASIC
    # What basic keeps, it keeps unchanged: the same values as the full shape.
    for name in BASIC:
        assert getattr(basic, name) == getattr(full, name), name
    assert basic.last_refresh == computed.last_refresh
