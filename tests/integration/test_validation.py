"""Every INVALID_ARGUMENT limit: status code plus a google.rpc.BadRequest violation naming the field."""

from __future__ import annotations

import grpc
import pytest

from tests.integration.itkit import Api, assert_invalid, expect_error, field_violations

LONG = "x" * 401
MAX = "y" * 400


@pytest.mark.parametrize("field_name", ["name", "derived_name", "description"])
async def test_text_fields_longer_than_400_characters_are_refused(api: Api, field_name: str) -> None:
    err = await expect_error(api.create(**{field_name: LONG}), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, f"insight.{field_name}")

    created = await api.create(**{field_name: MAX})
    assert getattr(created, field_name) == MAX

    err = await expect_error(
        api.update(created.id, [field_name], **{field_name: LONG}), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, f"insight.{field_name}")
    assert getattr(await api.get(created.id), field_name) == MAX


async def test_search_longer_than_200_characters_is_refused(api: Api) -> None:
    err = await expect_error(api.list(search="s" * 201), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "search")
    assert (await api.list(search="s" * 200)).count == 0


@pytest.mark.parametrize(
    "path",
    [
        "no_such_field",
        "short_id",
        "id",
        "created_at",
        "created_by",
        "last_modified_at",
        "result",
        "is_sample",
    ],
)
async def test_bad_update_mask_paths_are_refused_and_named(api: Api, path: str) -> None:
    insight = await api.create(name="masked")

    err = await expect_error(api.update(insight.id, [path], name="changed"), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, "update_mask", mentions=path)
    assert (await api.get(insight.id)).name == "masked"


async def test_a_bad_path_among_good_ones_refuses_the_whole_update(api: Api) -> None:
    insight = await api.create(name="masked")
    err = await expect_error(
        api.update(insight.id, ["name", "updated_at"], name="changed"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask", mentions="updated_at")
    assert (await api.get(insight.id)).name == "masked"


@pytest.mark.parametrize("field_name", ["limit", "offset"])
async def test_negative_limit_or_offset_is_refused(api: Api, field_name: str) -> None:
    err = await expect_error(api.list(**{field_name: -1}), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field_name)


async def test_tags_longer_than_255_characters_are_refused_on_create(api: Api) -> None:
    err = await expect_error(api.create(name="t", tags=["ok", "z" * 256]), grpc.StatusCode.INVALID_ARGUMENT)
    fields = [v.field for v in field_violations(err)]
    assert any(f.startswith("insight.tags") for f in fields), fields
    assert "insight.tags" in (err.details() or ""), err.details()
    created = await api.create(name="t", tags=["z" * 255])
    assert list(created.tags) == ["z" * 255]
