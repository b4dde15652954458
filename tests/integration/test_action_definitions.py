"""What an action's steps may hold, checked when it is saved (INVALID_ARGUMENT naming the field,
nothing saved), hostile definitions, and the activity log of actions."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import actions_pb2 as apb
from generated.insights.v1 import activity_pb2
from generated.insights.v1 import query_pb2 as qpb
from server.domain.actions import ActionFields, Actions
from server.errors import AlreadyExists
from server.principal import EnvironmentInfo, Principal
from tests.integration.actionkit import ActionsApi, M, event_filter, step
from tests.integration.itkit import Server, Tenant, assert_invalid, error_info, expect_error, field_violations


@pytest.fixture
def actions(server: Server, tenant: Tenant) -> ActionsApi:
    return ActionsApi.of(server, tenant, "action:write", "activity_log:read")


async def _refused(actions: ActionsApi, field: str, mentions: str | None = None, **fields: Any) -> None:
    """Create and update with these fields are INVALID_ARGUMENT on `field`; nothing is saved."""
    err = await expect_error(
        actions.create(**{"name": "Refused", **fields}), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, field, mentions=mentions)
    assert error_info(err).reason == "INVALID_ACTION"
    assert (await actions.list()).count == 0

    kept = await actions.create(name="Kept", steps=[step(event="kept")])
    err = await expect_error(
        actions.update(kept.id, list(fields) or ["name"], **fields), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, field, mentions=mentions)
    after = await actions.get(kept.id)
    assert (after.name, list(after.steps), after.version) == ("Kept", [step(event="kept")], 1)
    assert [e.activity for e in (await actions.activity(kept.id)).results] == ["created"]


@pytest.mark.parametrize(
    ("steps", "field", "mentions"),
    [
        (
            [step(event="a"), step(url="(unclosed", url_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[1].url",
            "regex",
        ),
        (
            [step(href="a(?=b)", href_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[0].href",
            "look-around",
        ),
        (
            [step(text="(\\w)\\1", text_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[0].text",
            "backreferences",
        ),
        # Regex bombs for RE2: repetitions it refuses to build
        ([step(url="(a{2}){501}", url_matching=M.ACTION_STEP_MATCHING_REGEX)], "action.steps[0].url", "1000"),
        ([step(url="a{1001}", url_matching=M.ACTION_STEP_MATCHING_REGEX)], "action.steps[0].url", "1000"),
        (
            [step(url="(" * 200 + "a" + ")" * 200, url_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[0].url",
            "deep",
        ),
        ([step(selector="button:hover")], "action.steps[0].selector", "pseudo-classes"),
        ([step(selector="a, b")], "action.steps[0].selector", "selector lists"),
        ([step(selector='[data-attr^="x"]')], "action.steps[0].selector", "'^='"),
        ([step(selector='[data-attr="it\\"s]')], "action.steps[0].selector", "not closed"),
        ([step(selector="div > ")], "action.steps[0].selector", "'>' needs an element"),
        ([step(tag_name="<button>")], "action.steps[0].tag_name", "letters, digits"),
        ([step(event="e" * 401)], "action.steps[0].event", "400"),
        ([step(properties=[event_filter("k", "v")] * 21)], "action.steps[0].properties", "at most 20"),
        (
            [
                step(
                    properties=[
                        qpb.PropertyFilter(
                            key="n",
                            operator=qpb.PROPERTY_OPERATOR_BETWEEN,
                            value=qpb.PropertyValue(string_value="x"),
                        )
                    ]
                )
            ],
            "action.steps[0].properties[0].value",
            "two numbers",
        ),
        (
            [step(properties=[event_filter("k", "(?<=x)", qpb.PROPERTY_OPERATOR_REGEX)])],
            "action.steps[0].properties[0].value",
            "look-around",
        ),
        (
            [step(properties=[qpb.PropertyFilter(value=qpb.PropertyValue(string_value="v"))])],
            "action.steps[0].properties[0].key",
            "key",
        ),
        ([step(event="a")] * 51, "action.steps", "at most 50 steps"),
    ],
)
async def test_a_step_that_cannot_be_saved_is_invalid_naming_its_field(
    actions: ActionsApi, steps: list[apb.ActionStep], field: str, mentions: str
) -> None:
    await _refused(actions, field, mentions, steps=steps)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "action.name"),
        ({"name": "   "}, "action.name"),
        ({"name": "n" * 401}, "action.name"),
        ({"description": "d" * 1001}, "action.description"),
        ({"tags": ["t" * 256]}, "action.tags[0]"),
        ({"tags": [f"t{i}" for i in range(101)]}, "action.tags"),
    ],
)
async def test_names_descriptions_and_tags_are_bounded(
    actions: ActionsApi, fields: dict[str, Any], field: str
) -> None:
    await _refused(actions, field, **fields)


async def test_every_problem_of_a_definition_is_reported_at_once(actions: ActionsApi) -> None:
    err = await expect_error(
        actions.create(
            name="Many problems",
            steps=[
                step(url="[", url_matching=M.ACTION_STEP_MATCHING_REGEX),
                step(event="fine"),
                step(selector="*", text="(", text_matching=M.ACTION_STEP_MATCHING_REGEX),
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [v.field for v in field_violations(err)] == [
        "action.steps[0].url",
        "action.steps[2].text",
        "action.steps[2].selector",
    ]


async def test_what_the_subset_allows_is_saved_as_given(actions: ActionsApi) -> None:
    selector = """div#app > form.signup.wide [data-attr="say \\"hi\\" > now"] button[title='it\\'s']"""
    regex = "^https://(www\\.)?example\\.com/(signup|join)(\\?.*)?$"
    action = await actions.create(
        name="Within the subset",
        steps=[
            step(
                event="$autocapture",
                selector=selector,
                href="/join",
                href_matching=M.ACTION_STEP_MATCHING_CONTAINS,
            ),
            step(
                url=regex,
                url_matching=M.ACTION_STEP_MATCHING_REGEX,
                text="(?i)sign ?up",
                text_matching=M.ACTION_STEP_MATCHING_REGEX,
            ),
            step(properties=[event_filter("$browser", "Chrome|Firefox", qpb.PROPERTY_OPERATOR_REGEX)]),
            step(),  # a step of nothing matches every event, as in the reference
        ],
    )
    first, second, third, fourth = (await actions.get(action.id)).steps
    assert first.selector == selector
    assert first.href_matching == M.ACTION_STEP_MATCHING_CONTAINS
    assert (second.url, second.url_matching, second.text_matching) == (
        regex,
        M.ACTION_STEP_MATCHING_REGEX,
        M.ACTION_STEP_MATCHING_REGEX,
    )
    assert third.properties[0].operator == qpb.PROPERTY_OPERATOR_REGEX
    assert fourth == apb.ActionStep()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: [step(selector="div " * 300_000)], "action.steps[0].selector"),
        (lambda: [step(selector='[x="' + '\\"' * 400_000 + '"]')], "action.steps[0].selector"),
        (
            lambda: [step(url="a" * 2_000_000, url_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[0].url",
        ),
        (
            lambda: [
                step(text="(?:" * 100_000 + "a" + ")" * 100_000, text_matching=M.ACTION_STEP_MATCHING_REGEX)
            ],
            "action.steps[0].text",
        ),
        (
            lambda: [step(url="a{" + "9" * 5_000 + "}", url_matching=M.ACTION_STEP_MATCHING_REGEX)],
            "action.steps[0].url",
        ),
        (lambda: [step(event="x")] * 200_000, "action.steps"),
        (lambda: [step(properties=[event_filter("k", "v")] * 50_000)], "action.steps[0].properties"),
    ],
)
async def test_hostile_definitions_are_invalid_argument_never_internal(
    actions: ActionsApi, build: Any, field: str
) -> None:
    err = await expect_error(actions.create(name="Hostile", steps=build()), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)
    assert len(err.details() or "") < 1100  # the error repeats little of what was sent
    assert (await actions.list()).count == 0


async def test_an_undefined_matching_number_is_invalid(actions: ActionsApi) -> None:
    request = apb.CreateActionRequest(
        environment_id=actions.environment_id,
        action=apb.Action(name="Undefined", steps=[step(url="x", url_matching=77)]),
    )
    err = await expect_error(
        actions.stub.CreateAction(request, metadata=actions.metadata, timeout=actions.timeout),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "steps[0].url_matching" in (err.details() or "")
    assert (await actions.list()).count == 0


async def test_the_database_refuses_a_second_live_name_that_passed_the_check(
    server: Server, tenant: Tenant
) -> None:
    """Two creates with one name that both pass the check before either commits: the unique index
    refuses the second, and the caller sees ALREADY_EXISTS as from the check, not INTERNAL."""

    class Unchecked(Actions):
        def _check_name_free(self, *args: Any) -> None:  # what a concurrent twin saw
            return None

    env = EnvironmentInfo(tenant.environment_id, tenant.organization_id, "UTC", 0)
    principal = Principal(0, tenant.user_id, frozenset({"*"}), {env.id: env})
    domain = Unchecked(server.db)
    first = domain.create(principal, env.id, ActionFields(name="Raced"))

    with pytest.raises(AlreadyExists) as caught:
        domain.create(principal, env.id, ActionFields(name="Raced"))
    assert caught.value.metadata == {"field": "action.name", "action": str(first.id)}
    with pytest.raises(AlreadyExists):
        domain.update(
            principal,
            env.id,
            domain.create(principal, env.id, ActionFields(name="Other")).id,
            ActionFields(name="Raced"),
            ["name"],
        )


# ----------------------------------------------------------------------------------- activity


def _value(v: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(v)


def _changes(entry: activity_pb2.ActivityLogEntry) -> dict[str, tuple[Any, Any]]:
    return {c.field: (_value(c.before), _value(c.after)) for c in entry.detail.changes}


async def test_activity_records_every_change_with_field_diffs(actions: ActionsApi, tenant: Tenant) -> None:
    action = await actions.create(name="Tracked", steps=[step(event="a")])
    await actions.update(
        action.id, ["name", "description", "tags"], name="Tracked 2", description="d", tags=["X"]
    )
    await actions.update(
        action.id, ["steps"], steps=[step(event="a", url="/x"), step(selector="a.b", tag_name="a")]
    )
    await actions.update(action.id, ["name"], name="Tracked 2")  # no change: no entry
    await actions.delete(action.id)
    await actions.update(action.id, ["deleted"], deleted=False)

    page = await actions.activity(action.id)
    assert page.total_count == 5
    assert [e.activity for e in page.results] == ["restored", "deleted", "updated", "updated", "created"]
    restored, deleted, steps, fields, created = page.results
    assert {e.scope for e in page.results} == {"Action"}
    assert {e.item_id for e in page.results} == {str(action.id)}
    assert created.detail.name == "Tracked" and not created.detail.changes
    assert created.user.email == tenant.email
    assert _changes(fields) == {
        "name": ("Tracked", "Tracked 2"),
        "description": ("", "d"),
        "tags": ([], ["x"]),
    }
    assert {c.type for c in fields.detail.changes} == {"Action"}
    assert _changes(steps) == {
        "steps": (
            [{"event": "a"}],
            [
                {"event": "a", "url": "/x", "url_matching": "contains"},
                {"selector": "a.b", "tag_name": "a"},
            ],
        )
    }
    assert _changes(deleted) == {"deleted": (False, True)}
    assert _changes(restored) == {"deleted": (True, False)}
    assert deleted.detail.name == "Tracked 2"


async def test_environment_activity_lists_every_action_newest_first_and_pages(actions: ActionsApi) -> None:
    one = await actions.create(name="One")
    two = await actions.create(name="Two")
    await actions.update(one.id, ["description"], description="changed")

    everything = await actions.activity()
    assert [(e.item_id, e.activity) for e in everything.results] == [
        (str(one.id), "updated"),
        (str(two.id), "created"),
        (str(one.id), "created"),
    ]
    first = await actions.activity(limit=2)
    assert (len(first.results), first.total_count, first.next_page) == (2, 3, 2)
    second = await actions.activity(limit=2, page=2)
    assert [e.item_id for e in second.results] == [str(one.id)] and second.previous_page == 1
    err = await expect_error(actions.activity(987_654_321), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "ACTION_NOT_FOUND"
