"""Soft delete through DeleteInsight or UpdateInsight, and restore through UpdateInsight."""

from __future__ import annotations

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, expect_error


async def _assert_unreachable(api: Api, insight: ipb.Insight) -> None:
    """A deleted insight: Get/Update/Delete answer NOT_FOUND and List omits it."""
    await expect_error(api.get(insight.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.get(insight.short_id), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.delete(insight.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.update(insight.id, ["name"], name="edit"), grpc.StatusCode.NOT_FOUND)
    assert insight.id not in await api.list_ids()
    assert insight.id not in await api.list_ids(short_id=insight.short_id)


@pytest.mark.parametrize("how", ["DeleteInsight", "UpdateInsight deleted=true"])
async def test_soft_delete_then_restore(api: Api, how: str) -> None:
    insight = await api.create(name="to delete", description="kept across delete", tags=["keep"])

    if how == "DeleteInsight":
        deleted = await api.delete(insight.id)
    else:
        deleted = await api.update(insight.id, ["deleted"], deleted=True)
    assert deleted.id == insight.id
    assert deleted.deleted is True
    await _assert_unreachable(api, insight)

    restored = await api.update(insight.id, ["deleted"], deleted=False)
    assert restored.deleted is False
    assert restored.name == "to delete"
    assert restored.description == "kept across delete"
    assert list(restored.tags) == ["keep"]

    fetched = await api.get(insight.short_id)
    assert fetched.deleted is False
    assert insight.id in await api.list_ids()


async def test_delete_by_short_id(api: Api) -> None:
    insight = await api.create(name="by short id")
    deleted = await api.delete(insight.short_id)
    assert deleted.id == insight.id
    await _assert_unreachable(api, insight)


async def test_restoring_a_live_insight_changes_nothing(api: Api) -> None:
    insight = await api.create(name="live")
    same = await api.update(insight.id, ["deleted"], deleted=False)
    assert same.deleted is False
    assert [e.activity for e in (await api.activity(insight.id)).results] == ["created"]


async def test_restore_and_edit_in_one_update(api: Api) -> None:
    insight = await api.create(name="old name")
    await api.delete(insight.id)

    restored = await api.update(insight.id, ["deleted", "name"], deleted=False, name="new name")
    assert restored.deleted is False
    assert restored.name == "new name"
    assert (await api.get(insight.id)).name == "new name"


async def test_delete_keeps_the_history(api: Api) -> None:
    insight = await api.create(name="history")
    await api.update(insight.id, ["name"], name="history 2")
    await api.delete(insight.id)
    await api.update(insight.id, ["deleted"], deleted=False)

    activities = [e.activity for e in (await api.activity(insight.id)).results]
    assert activities == ["restored", "deleted", "updated", "created"]
