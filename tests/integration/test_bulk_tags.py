"""BulkUpdateInsightTags: add, remove and set, skipped insights, normalisation and every limit."""

from __future__ import annotations

import grpc
from google.protobuf import json_format

from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, Tenant, assert_invalid, expect_error, field_violations

ADD = ipb.BULK_TAG_ACTION_ADD
REMOVE = ipb.BULK_TAG_ACTION_REMOVE
SET = ipb.BULK_TAG_ACTION_SET
SKIP_REASON = "Not found or no edit access"


def _updated(response: ipb.BulkUpdateInsightTagsResponse) -> dict[int, list[str]]:
    return {u.id: list(u.tags) for u in response.updated}


async def test_add_remove_and_set(api: Api) -> None:
    first = await api.create(name="first", tags=["existing"])
    second = await api.create(name="second")
    ids = [first.id, second.id]

    added = await api.bulk_tags(ids, ADD, ["  Growth", "kpi", "GROWTH", ""])
    assert _updated(added) == {first.id: ["existing", "growth", "kpi"], second.id: ["growth", "kpi"]}
    assert list(added.skipped) == []
    assert list((await api.get(first.id)).tags) == ["existing", "growth", "kpi"]

    removed = await api.bulk_tags(ids, REMOVE, ["KPI ", "existing"])
    assert _updated(removed)[first.id] == ["growth"]
    assert _updated(removed)[second.id] == ["growth"]
    assert list((await api.get(first.id)).tags) == ["growth"]

    replaced = await api.bulk_tags(ids, SET, ["b", "A"])
    assert _updated(replaced) == {first.id: ["a", "b"], second.id: ["a", "b"]}
    assert list((await api.get(second.id)).tags) == ["a", "b"]

    cleared = await api.bulk_tags(ids, SET, [])
    assert _updated(cleared) == {first.id: [], second.id: []}
    assert list((await api.get(first.id)).tags) == []
    assert await api.list_ids(tags=["a"]) == []


async def test_unknown_deleted_and_other_environment_ids_are_skipped(api: Api, tenant: Tenant) -> None:
    live = await api.create(name="live")
    deleted = await api.create(name="deleted")
    await api.delete(deleted.id)
    other_env = tenant.add_environment()
    elsewhere = await api.in_environment(other_env).create(name="elsewhere")
    unknown = 987_654_321

    response = await api.bulk_tags([live.id, unknown, elsewhere.id, deleted.id], ADD, ["x"])

    assert _updated(response) == {live.id: ["x"]}
    assert {s.id: s.reason for s in response.skipped} == {
        unknown: SKIP_REASON,
        elsewhere.id: SKIP_REASON,
        deleted.id: SKIP_REASON,
    }
    assert list((await api.in_environment(other_env).get(elsewhere.id)).tags) == []
    restored = await api.update(deleted.id, ["deleted"], deleted=False)
    assert list(restored.tags) == []


async def test_bulk_update_writes_one_tags_change_per_insight(api: Api) -> None:
    insight = await api.create(name="audited", tags=["a"])

    await api.bulk_tags([insight.id], ADD, ["b"])

    entry = (await api.activity(insight.id)).results[0]
    assert entry.activity == "updated"
    assert [c.field for c in entry.detail.changes] == ["tags"]
    change = entry.detail.changes[0]
    assert sorted(json_format.MessageToDict(change.before)) == ["a"]
    assert sorted(json_format.MessageToDict(change.after)) == ["a", "b"]


async def test_bulk_update_that_changes_nothing_writes_no_entry(api: Api) -> None:
    insight = await api.create(name="unchanged", tags=["a"])
    await api.bulk_tags([insight.id], ADD, ["A"])
    await api.bulk_tags([insight.id], REMOVE, ["zzz"])
    assert [e.activity for e in (await api.activity(insight.id)).results] == ["created"]


async def test_limits_at_the_boundary_are_accepted(api: Api) -> None:
    insight = await api.create(name="boundary")
    ids = [insight.id, *range(900_000_000, 900_000_499)]  # 500 ids
    tags = ["t" * 255, *(f"tag{i}" for i in range(19))]  # 20 tags: 500 x 20 = 10,000

    response = await api.bulk_tags(ids, ADD, tags)

    assert sorted(_updated(response)[insight.id]) == sorted(tags)
    assert len(response.skipped) == 499

    hundred = [f"h{i}" for i in range(100)]
    response = await api.bulk_tags([insight.id], SET, hundred)
    assert sorted(_updated(response)[insight.id]) == sorted(hundred)


async def test_limits_are_enforced(api: Api) -> None:
    insight = await api.create(name="limits", tags=["keep"])

    err = await expect_error(api.bulk_tags([], ADD, ["x"]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "ids")

    err = await expect_error(api.bulk_tags(list(range(1, 502)), ADD, ["x"]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "ids")

    err = await expect_error(
        api.bulk_tags([insight.id], ADD, [f"t{i}" for i in range(101)]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "tags")

    err = await expect_error(
        api.bulk_tags([insight.id], ADD, ["ok", "x" * 256]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "tags[1]")

    err = await expect_error(
        api.bulk_tags(list(range(1, 501)), ADD, [f"t{i}" for i in range(21)]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(err)} & {"ids", "tags"}, err.details()

    for action in (ADD, REMOVE):
        err = await expect_error(api.bulk_tags([insight.id], action, []), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "tags")

    err = await expect_error(
        api.bulk_tags([insight.id], ipb.BULK_TAG_ACTION_UNSPECIFIED, ["x"]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "action")

    # nothing was applied by any refused request
    assert list((await api.get(insight.id)).tags) == ["keep"]
