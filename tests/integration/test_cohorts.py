"""CohortsService through the real server (SQLite and PostgreSQL): CRUD, soft delete and restore,
versions, scopes, environment isolation, invalid definitions, cycles, members and CSV uploads."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from generated.insights.v1 import cohorts_pb2 as cpb
from generated.insights.v1 import cohorts_pb2_grpc as cgrpc
from server.domain.ingest import person_id_for
from server.queries.common.codec import from_reference_json
from storage.events import EventRow, PersonRow
from storage.models import ActivityLog
from tests.integration.itkit import (
    Metadata,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
)

TIMEOUT = 15.0


def filters(*groups: list[dict[str, Any]], kind: str = "AND") -> cpb.CohortFilters:
    """CohortFilters from reference-style JSON criteria, one list per group (each group ANDed)."""
    return from_reference_json(
        {"properties": {"type": kind, "values": [{"type": "AND", "values": list(g)} for g in groups]}},
        cpb.CohortFilters,
    )


def plan_is(value: str) -> dict[str, Any]:
    return {"person_property": {"key": "plan", "type": "person", "operator": "exact", "value": value}}


def performed(event: str, count: int = 1, days: int = 30, negation: bool = False) -> dict[str, Any]:
    return {
        "behavioral": {"event": event, "count": count, "time_value": days},
        **({"negation": True} if negation else {}),
    }


def in_cohort(cohort_id: int, negation: bool = False) -> dict[str, Any]:
    return {"in_cohort": {"cohort_id": cohort_id}, **({"negation": True} if negation else {})}


class Cohorts:
    """CohortsService calls of one environment's key."""

    def __init__(self, stub: cgrpc.CohortsServiceStub, environment_id: int, metadata: Metadata):
        self.stub, self.env, self.md = stub, environment_id, metadata

    def as_key(self, raw_key: str, environment_id: int | None = None) -> Cohorts:
        return Cohorts(self.stub, self.env if environment_id is None else environment_id, bearer(raw_key))

    async def create(self, name: str = "Power users", **fields: Any) -> cpb.Cohort:
        request = cpb.CreateCohortRequest(environment_id=self.env, cohort=cpb.Cohort(name=name, **fields))
        return await self.stub.CreateCohort(request, metadata=self.md, timeout=TIMEOUT)

    async def dynamic(self, *groups: list[dict[str, Any]], name: str = "Dynamic") -> cpb.Cohort:
        return await self.create(name, filters=filters(*groups))

    async def get(self, cohort_id: int) -> cpb.Cohort:
        request = cpb.GetCohortRequest(environment_id=self.env, id=cohort_id)
        return await self.stub.GetCohort(request, metadata=self.md, timeout=TIMEOUT)

    async def list(self, **kw: Any) -> cpb.ListCohortsResponse:
        request = cpb.ListCohortsRequest(environment_id=self.env, **kw)
        return await self.stub.ListCohorts(request, metadata=self.md, timeout=TIMEOUT)

    async def update(self, cohort_id: int, mask: Sequence[str], **fields: Any) -> cpb.Cohort:
        request = cpb.UpdateCohortRequest(
            environment_id=self.env,
            id=cohort_id,
            cohort=cpb.Cohort(**fields),
            update_mask=field_mask_pb2.FieldMask(paths=list(mask)),
        )
        return await self.stub.UpdateCohort(request, metadata=self.md, timeout=TIMEOUT)

    async def delete(self, cohort_id: int) -> cpb.Cohort:
        request = cpb.DeleteCohortRequest(environment_id=self.env, id=cohort_id)
        return await self.stub.DeleteCohort(request, metadata=self.md, timeout=TIMEOUT)

    async def persons(self, cohort_id: int, **kw: Any) -> cpb.ListCohortPersonsResponse:
        request = cpb.ListCohortPersonsRequest(environment_id=self.env, id=cohort_id, **kw)
        return await self.stub.ListCohortPersons(request, metadata=self.md, timeout=TIMEOUT)

    async def upload(
        self, cohort_id: int, *chunks: bytes, env: int | None = None
    ) -> cpb.UploadCohortMembersResponse:
        async def requests() -> AsyncIterator[cpb.UploadCohortMembersRequest]:
            for chunk in chunks:
                yield cpb.UploadCohortMembersRequest(
                    environment_id=self.env if env is None else env, cohort_id=cohort_id, csv_chunk=chunk
                )

        return await self.stub.UploadCohortMembers(requests(), metadata=self.md, timeout=TIMEOUT)


@pytest.fixture
def cohorts(server: Server, tenant: Tenant) -> Cohorts:
    return Cohorts(
        cgrpc.CohortsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("cohort:write"))
    )


def seed_people(server: Server, environment_id: int, now: dt.datetime) -> dict[str, uuid.UUID]:
    """Persons ann (pro, 3 pageviews), bob (free, 1 pageview), cid (pro, no events) and dan (5
    pageviews, no properties: ingestion created his row at his first event, 5 days ago); returns
    their person ids by name."""
    ids = {name: person_id_for(environment_id, f"{name}-device") for name in ("ann", "bob", "cid", "dan")}
    plans = {"ann": "pro", "bob": "free", "cid": "pro"}
    server.app.events.insert_persons(
        PersonRow(
            environment_id,
            ids[name],
            json.dumps({"plan": plan, "name": name}),
            now - dt.timedelta(days=60 - i),
        )
        for i, (name, plan) in enumerate(plans.items())
    )
    counts = {"ann": 3, "bob": 1, "dan": 5}
    server.app.events.insert_events(
        EventRow(
            environment_id,
            uuid.uuid4(),
            "$pageview",
            f"{name}-device",
            ids[name],
            now - dt.timedelta(days=n + 1),
            "{}",
            "{}",
        )
        for name, count in counts.items()
        for n in range(count)
    )
    return ids


# ------------------------------------------------------------------------------------------ CRUD


def activity_of(server: Server, environment_id: int, cohort_id: int) -> list[tuple[str, list[str]]]:
    """(verb, changed fields) of the cohort's activity entries, oldest first."""
    with server.db.session() as session:
        rows = session.scalars(
            select(ActivityLog)
            .where(
                ActivityLog.environment_id == environment_id,
                ActivityLog.scope == "Cohort",
                ActivityLog.item_id == str(cohort_id),
            )
            .order_by(ActivityLog.id)
        ).all()
        return [(r.activity, sorted(c["field"] for c in r.detail["changes"] or [])) for r in rows]


async def test_create_get_list_update_delete_restore(server: Server, cohorts: Cohorts) -> None:
    created = await cohorts.create(
        "Pro users", description="on the pro plan", filters=filters([plan_is("pro"), performed("$pageview")])
    )
    assert created.id > 0 and created.version == 1 and not created.is_static and not created.deleted
    assert created.created_by.email and created.HasField("created_at")
    assert created.filters == filters([plan_is("pro"), performed("$pageview")])
    assert await cohorts.get(created.id) == created

    other = await cohorts.create("Churned", filters=filters([performed("$pageview", negation=True)]))
    listed = await cohorts.list()
    assert [c.id for c in listed.results] == [other.id, created.id] and listed.count == 2
    assert [c.id for c in (await cohorts.list(search="PRO PLAN")).results] == [created.id]
    page = await cohorts.list(limit=1)
    assert page.count == 2 and page.next_offset == 1 and not page.HasField("previous_offset")

    renamed = await cohorts.update(created.id, ["name", "description"], name="Pro", description="")
    assert (renamed.name, renamed.description, renamed.version) == ("Pro", "", 1)  # not the definition
    changed = await cohorts.update(created.id, ["filters"], filters=filters([plan_is("business")]))
    assert changed.version == 2 and changed.filters == filters([plan_is("business")])

    deleted = await cohorts.delete(created.id)
    assert deleted.deleted
    await expect_error(cohorts.get(created.id), grpc.StatusCode.NOT_FOUND)
    assert [c.id for c in (await cohorts.list()).results] == [other.id]
    await expect_error(cohorts.update(created.id, ["name"], name="x"), grpc.StatusCode.NOT_FOUND)
    restored = await cohorts.update(created.id, ["deleted"], deleted=False)
    assert not restored.deleted and restored.version == 2
    assert (await cohorts.get(created.id)).name == "Pro"
    assert activity_of(server, cohorts.env, created.id) == [
        ("created", []),
        ("updated", ["description", "name"]),
        ("updated", ["filters"]),
        ("deleted", ["deleted"]),
        ("updated", ["deleted"]),
    ]


async def test_update_refuses_fields_it_cannot_change(cohorts: Cohorts) -> None:
    cohort = await cohorts.dynamic([plan_is("pro")])
    err = await expect_error(
        cohorts.update(cohort.id, ["is_static"], is_static=True), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask", mentions="is_static")
    err = await expect_error(
        cohorts.update(cohort.id, ["version"], version=9), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask")
    static = await cohorts.create("Static", is_static=True)
    err = await expect_error(
        cohorts.update(static.id, ["filters"], filters=filters([plan_is("pro")])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "cohort.filters")


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("criterion", "field"),
    [
        ({"behavioral": {"event": "$pageview"}}, "values[0].values[0].behavioral.time_value"),
        (
            {"behavioral": {"event": "$pageview", "time_value": 99999}},
            "values[0].values[0].behavioral.time_value",
        ),
        (
            {"behavioral": {"event": "$pageview", "time_value": 3, "count": -1}},
            "values[0].values[0].behavioral.count",
        ),
        (
            {"behavioral": {"event": "$pageview", "time_value": 3, "date_from": "-3d"}},
            "values[0].values[0].behavioral.date_from",
        ),
        (
            {"behavioral": {"event": "$pageview", "date_from": "yesterday"}},
            "values[0].values[0].behavioral.date_from",
        ),
        (
            {"behavioral": {"event": "$pageview", "date_from": "2024-02-01", "date_to": "2024-01-01"}},
            "values[0].values[0].behavioral.date_from",
        ),
        ({"behavioral": {"event": "", "time_value": 3}}, "values[0].values[0].behavioral.event"),
        ({"behavioral": {"action_id": 0, "time_value": 3}}, "values[0].values[0].behavioral.action_id"),
        ({"behavioral": {"time_value": 3}}, "values[0].values[0].behavioral.event"),
        (
            {"person_property": {"key": "plan", "type": "event", "value": "x"}},
            "values[0].values[0].person_property.type",
        ),
        (
            {"person_property": {"key": "plan", "type": "person", "operator": "regex", "value": "(?<=a)b"}},
            "values[0].values[0].person_property.value",
        ),
        ({"person_property": {"type": "person", "value": "x"}}, "values[0].values[0].person_property.key"),
        ({"in_cohort": {"cohort_id": 987654321}}, "values[0].values[0].in_cohort.cohort_id"),
        ({"negation": True}, "values[0].values[0]"),
    ],
)
async def test_invalid_definitions_name_the_field(
    cohorts: Cohorts, criterion: dict[str, Any], field: str
) -> None:
    err = await expect_error(cohorts.dynamic([criterion]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, f"cohort.filters.properties.{field}")


async def test_invalid_cohorts_name_the_field(cohorts: Cohorts) -> None:
    err = await expect_error(
        cohorts.create("", filters=filters([plan_is("a")])), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "cohort.name")
    err = await expect_error(
        cohorts.create("x" * 401, filters=filters([plan_is("a")])), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "cohort.name")
    err = await expect_error(cohorts.create("No criteria"), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "cohort.filters.properties.values")
    err = await expect_error(cohorts.dynamic([]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "cohort.filters.properties.values[0].values")
    err = await expect_error(
        cohorts.create("Static", is_static=True, filters=filters([plan_is("a")])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "cohort.filters")
    err = await expect_error(cohorts.list(search="s" * 201), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "search")
    err = await expect_error(cohorts.list(limit=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "limit")
    # An action is only checked to be an id: it is stored for the action compiler to come.
    stored = await cohorts.dynamic([{"behavioral": {"action_id": 42, "time_value": 7}}])
    assert stored.filters.properties.values[0].values[0].behavioral.action_id == 42


async def test_cycles_and_deep_nesting_are_refused(cohorts: Cohorts) -> None:
    first = await cohorts.dynamic([plan_is("pro")], name="first")
    second = await cohorts.dynamic([in_cohort(first.id)], name="second")
    field = "cohort.filters.properties.values[0].values[1].in_cohort.cohort_id"
    err = await expect_error(
        cohorts.update(first.id, ["filters"], filters=filters([plan_is("pro"), in_cohort(second.id)])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, field, mentions="cycle")
    err = await expect_error(
        cohorts.update(
            first.id, ["filters"], filters=filters([plan_is("pro"), in_cohort(first.id, negation=True)])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, field, mentions="cycle")
    assert (await cohorts.get(first.id)).version == 1  # nothing was saved

    chain = [second]
    for n in range(3):
        chain.append(await cohorts.dynamic([in_cohort(chain[-1].id)], name=f"level {n + 3}"))
    # first <- second <- 3 <- 4 <- 5: one more level would be 6 deep.
    err = await expect_error(
        cohorts.dynamic([plan_is("x"), in_cohort(chain[-1].id)]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(
        err, "cohort.filters.properties.values[0].values[1].in_cohort.cohort_id", mentions="5 levels"
    )


# ------------------------------------------------------------------------------ scopes, tenants


async def test_scopes_name_the_missing_scope(cohorts: Cohorts, tenant: Tenant) -> None:
    cohort = await cohorts.dynamic([plan_is("pro")])
    reader = cohorts.as_key(tenant.key("cohort:read"))
    assert (await reader.get(cohort.id)).id == cohort.id
    assert (await reader.list()).count == 1
    for call in (
        reader.dynamic([plan_is("pro")]),
        reader.update(cohort.id, ["name"], name="x"),
        reader.delete(cohort.id),
        reader.upload(cohort.id, b"distinct_id\na\n"),
    ):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert "cohort:write" in (err.details() or "")
    stranger = cohorts.as_key(tenant.key("insight:write"))
    for read in (stranger.get(cohort.id), stranger.list(), stranger.persons(cohort.id)):
        err = await expect_error(read, grpc.StatusCode.PERMISSION_DENIED)
        assert "cohort:read" in (err.details() or "")


async def test_environments_are_isolated(
    server: Server, cohorts: Cohorts, tenant: Tenant, make_tenant: Any
) -> None:
    mine = await cohorts.dynamic([plan_is("pro")])
    other = make_tenant()
    theirs = cohorts.as_key(other.key("cohort:write"), other.environment_id)
    await expect_error(theirs.get(mine.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(theirs.persons(mine.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(theirs.update(mine.id, ["name"], name="x"), grpc.StatusCode.NOT_FOUND)
    await expect_error(theirs.delete(mine.id), grpc.StatusCode.NOT_FOUND)
    assert (await theirs.list()).count == 0
    # A reference by id reaches only the caller's environment.
    err = await expect_error(theirs.dynamic([in_cohort(mine.id)]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "cohort.filters.properties.values[0].values[0].in_cohort.cohort_id")
    # Their key cannot name my environment at all.
    err = await expect_error(
        theirs.as_key(other.key("cohort:write"), tenant.environment_id).get(mine.id),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
    assert (await cohorts.get(mine.id)).name == mine.name


# ------------------------------------------------------------------------------------- members


async def test_members_of_dynamic_cohorts(server: Server, cohorts: Cohorts, tenant: Tenant) -> None:
    now = dt.datetime.now(dt.UTC)
    ids = seed_people(server, tenant.environment_id, now)

    async def members(cohort: cpb.Cohort) -> list[str]:
        found = await cohorts.persons(cohort.id)
        assert found.count == len(found.results) and found.version == cohort.version
        names = {str(v): k for k, v in ids.items()}
        return [names[p.id] for p in found.results]

    pro = await cohorts.dynamic([plan_is("pro")])
    assert await members(pro) == ["cid", "ann"]  # newest persons first
    active = await cohorts.dynamic([performed("$pageview", count=2)])
    assert await members(active) == ["dan", "ann"]  # dan's row comes from his events
    idle = await cohorts.dynamic([performed("$pageview", negation=True)])
    assert await members(idle) == ["cid"]
    at_most_one = await cohorts.dynamic(
        [{"behavioral": {"event": "$pageview", "operator": "lte", "count": 1, "time_value": 30}}]
    )
    assert await members(at_most_one) == ["cid", "bob"]
    either = await cohorts.create(
        "either", filters=filters([plan_is("free")], [in_cohort(active.id)], kind="OR")
    )
    assert await members(either) == ["dan", "bob", "ann"]
    not_pro = await cohorts.dynamic([in_cohort(pro.id, negation=True)])
    assert await members(not_pro) == ["dan", "bob"]

    listed = await cohorts.persons(pro.id, limit=1)
    assert listed.count == 2 and listed.next_offset == 1
    ann = (await cohorts.persons(pro.id, offset=1)).results[0]
    assert ann.distinct_ids == ["ann-device"] and json.loads(ann.properties) == {"plan": "pro", "name": "ann"}
    assert ann.HasField("created_at")
    counted = await cohorts.get(pro.id)
    assert counted.count == 2 and counted.HasField("last_calculated_at")

    # A nested cohort deleted after it was referenced: its users cannot be computed.
    await cohorts.delete(pro.id)
    err = await expect_error(cohorts.persons(not_pro.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "COHORT_UNAVAILABLE"
    await expect_error(cohorts.persons(pro.id), grpc.StatusCode.NOT_FOUND)
    # Caller text reaches the engine only as bound values: quotes and SQL are just names.
    hostile = "$pageview' OR 1=1 --"
    quoted = await cohorts.dynamic(
        [
            performed(hostile),
            {"person_property": {"key": "plan') OR ('1", "type": "person", "value": "pro' --"}},
        ],
    )
    assert (await cohorts.persons(quoted.id)).count == 0
    assert await members(await cohorts.dynamic([performed(hostile, negation=True)])) == [
        "dan",
        "cid",
        "bob",
        "ann",
    ]
    # An action no longer there (it never was): the members cannot be computed, naming it.
    actions = await cohorts.dynamic([{"behavioral": {"action_id": 7, "time_value": 30}}])
    err = await expect_error(cohorts.persons(actions.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "ACTION_UNAVAILABLE" and error_info(err).metadata["action"] == "7"


async def test_static_members_from_csv(server: Server, cohorts: Cohorts, tenant: Tenant) -> None:
    now = dt.datetime.now(dt.UTC)
    ids = seed_people(server, tenant.environment_id, now)
    static = await cohorts.create("Imported", is_static=True)
    assert static.count == 0 and static.version == 1
    new_person = person_id_for(tenant.environment_id, "never-seen")
    # Chunks split anywhere, even inside a row: the file is read whole.
    text = (
        "Email,Distinct_ID,person_id\n"
        "a@x.io,ann-device,\n"
        f"b@x.io,,{ids['bob']}\n"
        "c@x.io,never-seen,\n"
        "d@x.io,ann-device,\n"
        "e@x.io,,not-a-uuid\n"
        "f@x.io,,\n"
        "\n"
    ).encode()
    result = await cohorts.upload(static.id, text[:20], text[20:41], text[41:])
    assert (result.rows, result.added, result.duplicates, result.rejected) == (6, 3, 1, 2)
    assert [r.line for r in result.rejections] == [6, 7]
    assert "not a UUID" in result.rejections[0].reason
    assert result.cohort.version == 2 and result.cohort.count == 3
    members = await cohorts.persons(static.id)
    assert {p.id for p in members.results} == {str(ids["ann"]), str(ids["bob"]), str(new_person)}
    unknown = next(p for p in members.results if p.id == str(new_person))
    assert unknown.properties == "{}" and not unknown.HasField("created_at")

    again = await cohorts.upload(static.id, b"distinct_id\nann-device\n")
    assert (again.added, again.duplicates, again.cohort.version) == (0, 1, 2)  # nothing changed
    # Static members nest in dynamic cohorts like any other.
    imported_pro = await cohorts.create("mix", filters=filters([in_cohort(static.id), plan_is("pro")]))
    assert [p.id for p in (await cohorts.persons(imported_pro.id)).results] == [str(ids["ann"])]


async def test_bad_uploads(cohorts: Cohorts, tenant: Tenant) -> None:
    static = await cohorts.create("Imported", is_static=True)
    dynamic = await cohorts.dynamic([plan_is("pro")])
    err = await expect_error(
        cohorts.upload(dynamic.id, b"distinct_id\na\n"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "cohort_id", mentions="static")
    err = await expect_error(cohorts.upload(static.id, b"email\na@b.c\n"), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "csv_chunk", mentions="distinct_id")
    err = await expect_error(
        cohorts.upload(static.id, b"distinct_id\n\xff\n"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "csv_chunk", mentions="UTF-8")
    err = await expect_error(cohorts.upload(static.id), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "csv_chunk")
    err = await expect_error(cohorts.upload(987654321, b"distinct_id\na\n"), grpc.StatusCode.NOT_FOUND)
    big = b"distinct_id\n" + b"x" * (10 * 1024 * 1024)
    err = await expect_error(
        cohorts.upload(static.id, *[big[i : i + 1024 * 1024] for i in range(0, len(big), 1024 * 1024)]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "csv_chunk", mentions="MiB")
    assert (await cohorts.get(static.id)).version == 1
