"""ActionsService on both metadata backends: CRUD, soft delete and restore, masks, names, scopes and
the isolation of environments."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import select

from generated.insights.v1 import actions_pb2 as apb
from storage.models import Action
from tests.integration.actionkit import ActionsApi, M, event_filter, step
from tests.integration.itkit import Server, Tenant, assert_invalid, error_info, expect_error, new_tenant


@pytest.fixture
def actions(server: Server, tenant: Tenant) -> ActionsApi:
    """The tenant's owner with a key holding the action and activity scopes."""
    return ActionsApi.of(server, tenant, "action:write", "activity_log:read")


def _signup_steps() -> list[apb.ActionStep]:
    return [
        step(event="$pageview", url="/signup"),
        step(
            event="$autocapture",
            selector='form#signup > button[data-attr="submit"]',
            text="Sign up",
            tag_name="BUTTON",
            properties=[event_filter("$browser", "Chrome")],
        ),
    ]


async def test_create_then_get_list_and_the_defaults_a_saved_step_shows(
    actions: ActionsApi, tenant: Tenant
) -> None:
    created = await actions.create(
        name="Signed up",
        description="Visited or clicked",
        tags=[" Growth", "growth", "Funnel "],
        steps=_signup_steps(),
    )

    assert created.id > 0
    assert created.name == "Signed up"
    assert created.description == "Visited or clicked"
    assert list(created.tags) == ["funnel", "growth"]
    assert created.version == 1
    assert created.deleted is False
    assert created.created_by.email == tenant.email
    assert created.created_at.seconds > 0 and created.updated_at == created.created_at
    first, second = created.steps
    # Each given text part shows the comparison it took; a part not given shows none.
    assert (first.url, first.url_matching, first.text_matching) == (
        "/signup",
        M.ACTION_STEP_MATCHING_CONTAINS,
        0,
    )
    assert (second.text, second.text_matching) == ("Sign up", M.ACTION_STEP_MATCHING_EXACT)
    assert second.url_matching == M.ACTION_STEP_MATCHING_UNSPECIFIED
    assert second.selector == 'form#signup > button[data-attr="submit"]'
    assert second.tag_name == "button"
    assert list(second.properties) == [event_filter("$browser", "Chrome")]

    assert await actions.get(created.id) == created
    listed = await actions.list()
    assert listed.count == 1 and list(listed.results) == [created]


async def test_update_by_mask_and_the_version_follows_the_steps(actions: ActionsApi) -> None:
    action = await actions.create(name="Checkout", steps=[step(event="checkout")])

    renamed = await actions.update(action.id, ["name", "tags"], name="Checked out", tags=["Sales"])
    assert (renamed.name, list(renamed.tags), renamed.version) == ("Checked out", ["sales"], 1)
    assert renamed.steps == action.steps  # not in the mask: kept

    changed = await actions.update(
        action.id, ["steps"], steps=[step(event="checkout"), step(event="purchase")]
    )
    assert changed.version == 2
    assert [s.event for s in changed.steps] == ["checkout", "purchase"]

    same = await actions.update(action.id, ["steps"], steps=[step(event="checkout"), step(event="purchase")])
    assert same.version == 2  # the same steps again: results computed with them stay valid

    cleared = await actions.update(action.id, ["steps", "description"], description="")
    assert (list(cleared.steps), cleared.version) == ([], 3)
    assert (await actions.get(action.id)).version == 3


async def test_update_without_a_mask_changes_the_fields_given(actions: ActionsApi) -> None:
    action = await actions.create(name="No mask", description="kept", steps=[step(event="a")])

    updated = await actions.update(action.id, None, name="Still no mask")

    assert (updated.name, updated.description, updated.version) == ("Still no mask", "kept", 1)


@pytest.mark.parametrize(
    "path", ["id", "version", "created_at", "created_by", "updated_at", "bogus", "steps.event"]
)
async def test_a_mask_path_that_is_not_writable_is_invalid_and_changes_nothing(
    actions: ActionsApi, path: str
) -> None:
    action = await actions.create(name="Masked")

    err = await expect_error(
        actions.update(action.id, ["name", path], name="x"), grpc.StatusCode.INVALID_ARGUMENT
    )

    assert_invalid(err, "update_mask", mentions=repr(path))
    assert error_info(err).reason == "INVALID_UPDATE_MASK"
    assert (await actions.get(action.id)).name == "Masked"


@pytest.mark.parametrize("how", ["DeleteAction", "UpdateAction deleted=true"])
async def test_soft_delete_keeps_the_row_and_an_update_restores_it(
    actions: ActionsApi, server: Server, how: str
) -> None:
    action = await actions.create(name="To delete", tags=["keep"], steps=_signup_steps())

    deleted = await (
        actions.delete(action.id)
        if how == "DeleteAction"
        else actions.update(action.id, ["deleted"], deleted=True)
    )

    assert deleted.deleted is True and deleted.id == action.id
    for call in (
        actions.get(action.id),
        actions.delete(action.id),
        actions.update(action.id, ["name"], name="edit"),
        actions.update(action.id, ["deleted"], deleted=True),
    ):
        err = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert error_info(err).reason == "ACTION_NOT_FOUND"
    assert (await actions.list()).count == 0
    with server.db.session() as session:
        row = session.scalars(select(Action).where(Action.id == action.id)).one()
        assert row.deleted is True and row.name == "To delete"

    restored = await actions.update(action.id, ["deleted"], deleted=False)

    assert restored.deleted is False
    assert (restored.name, list(restored.tags), restored.steps, restored.version) == (
        "To delete",
        ["keep"],
        action.steps,
        action.version,
    )
    assert await actions.get(action.id) == restored
    assert await actions.list_ids() == [action.id]


async def test_restoring_a_live_action_changes_nothing(actions: ActionsApi) -> None:
    action = await actions.create(name="Live")
    same = await actions.update(action.id, ["deleted"], deleted=False)
    assert same == action
    assert [e.activity for e in (await actions.activity(action.id)).results] == ["created"]


async def test_names_are_unique_among_live_actions(actions: ActionsApi, tenant: Tenant) -> None:
    first = await actions.create(name="Purchase")

    err = await expect_error(actions.create(name="Purchase"), grpc.StatusCode.ALREADY_EXISTS)
    assert error_info(err).reason == "ACTION_NAME_TAKEN"
    assert error_info(err).metadata["action"] == str(first.id)
    assert "action.name" in (err.details() or "")
    other = await actions.create(name="purchase")  # names compare exactly, as the reference
    err = await expect_error(
        actions.update(other.id, ["name"], name="Purchase"), grpc.StatusCode.ALREADY_EXISTS
    )

    await actions.delete(first.id)
    second = await actions.create(name="Purchase")  # a deleted action's name is free
    err = await expect_error(
        actions.update(first.id, ["deleted"], deleted=False), grpc.StatusCode.ALREADY_EXISTS
    )
    assert error_info(err).metadata["action"] == str(second.id)
    renamed = await actions.update(first.id, ["deleted", "name"], deleted=False, name="Purchase (old)")
    assert renamed.deleted is False

    elsewhere = actions.in_environment(tenant.add_environment())
    assert (await elsewhere.create(name="Purchase")).name == "Purchase"
    assert sorted(a.name for a in (await actions.list()).results) == [
        "Purchase",
        "Purchase (old)",
        "purchase",
    ]


async def test_list_searches_names_in_any_case_newest_first_and_pages(actions: ActionsApi) -> None:
    made = [
        await actions.create(name=name)
        for name in ("Sign up", "SIGNUP_bonus", "Logged in", "50% off", "signed")
    ]

    assert await actions.list_ids(search="sign") == [made[4].id, made[1].id, made[0].id]
    assert await actions.list_ids(search="p_b") == [made[1].id]  # _ is a character, not a wildcard
    assert await actions.list_ids(search="%") == [made[3].id]
    assert await actions.list_ids(search="nothing") == []

    first = await actions.list(limit=2)
    assert (first.count, [a.id for a in first.results]) == (5, [made[4].id, made[3].id])
    assert first.next_offset == 2 and not first.HasField("previous_offset")
    last = await actions.list(limit=2, offset=4)
    assert [a.id for a in last.results] == [made[0].id]
    assert not last.HasField("next_offset") and last.previous_offset == 2


@pytest.mark.parametrize(
    ("filters", "field"),
    [({"search": "x" * 201}, "search"), ({"limit": -1}, "limit"), ({"offset": -5}, "offset")],
)
async def test_list_arguments_are_checked(
    actions: ActionsApi, filters: dict[str, object], field: str
) -> None:
    err = await expect_error(actions.list(**filters), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)


@pytest.mark.parametrize(
    ("scopes", "call", "required"),
    [
        (("action:read",), "create", "action:write"),
        (("action:read",), "update", "action:write"),
        (("action:read",), "delete", "action:write"),
        (("insight:write",), "get", "action:read"),
        (("insight:write", "activity_log:read"), "list", "action:read"),
        (("action:write",), "activity", "activity_log:read"),
    ],
)
async def test_a_missing_scope_is_permission_denied_naming_it(
    actions: ActionsApi, tenant: Tenant, scopes: tuple[str, ...], call: str, required: str
) -> None:
    action = await actions.create(name="Scoped")
    limited = actions.as_key(tenant.key(*scopes))
    calls = {
        "create": lambda: limited.create(name="Refused"),
        "update": lambda: limited.update(action.id, ["name"], name="Refused"),
        "delete": lambda: limited.delete(action.id),
        "get": lambda: limited.get(action.id),
        "list": lambda: limited.list(),
        "activity": lambda: limited.activity(action.id),
    }

    err = await expect_error(calls[call](), grpc.StatusCode.PERMISSION_DENIED)

    assert f"'{required}'" in (err.details() or "")
    assert error_info(err).reason == "MISSING_SCOPE"
    assert error_info(err).metadata["scope"] == required
    unchanged = await actions.get(action.id)
    assert (unchanged.name, unchanged.deleted) == ("Scoped", False)
    assert (await actions.list()).count == 1


async def test_read_scope_reads_and_write_implies_read(actions: ActionsApi, tenant: Tenant) -> None:
    action = await actions.create(name="Readable")
    reader = actions.as_key(tenant.key("action:read"))
    assert (await reader.get(action.id)).name == "Readable"
    assert await reader.list_ids() == [action.id]
    writer = actions.as_key(tenant.key("action:write"))
    assert (await writer.get(action.id)).name == "Readable"


async def test_another_environments_action_is_not_found(actions: ActionsApi, tenant: Tenant) -> None:
    second = actions.in_environment(tenant.add_environment())
    theirs = await second.create(name="In the second environment", steps=[step(event="x")])

    for call in (
        actions.get(theirs.id),
        actions.update(theirs.id, ["name"], name="stolen"),
        actions.update(theirs.id, ["deleted"], deleted=False),
        actions.delete(theirs.id),
        actions.activity(theirs.id),
    ):
        err = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert error_info(err).reason == "ACTION_NOT_FOUND"
    assert (await actions.list()).count == 0
    assert (await actions.activity()).total_count == 0
    assert (await second.get(theirs.id)).name == "In the second environment"


async def test_another_organizations_environment_is_permission_denied(
    actions: ActionsApi, server: Server
) -> None:
    stranger = new_tenant(server)
    theirs = await ActionsApi.of(server, stranger, "action:write").create(name="Theirs")
    intruder = actions.in_environment(stranger.environment_id)

    for call in (
        intruder.get(theirs.id),
        intruder.list(),
        intruder.create(name="Mine"),
        intruder.delete(theirs.id),
    ):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
