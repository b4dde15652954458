"""The demo dataset: deterministic, the requested size, funnel-shaped, and set up idempotently."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2
from server.cli import demo
from server.cli.loader import to_proto
from storage.models import Environment, Insight
from tests.integration.itkit import Server, Tenant, bearer, cli_flags, eventless_tenant

REPO = Path(__file__).resolve().parents[2]
ANCHOR = dt.date(2024, 3, 15)


@pytest.fixture
async def tenant(server: Server, make_tenant: Callable[[], Tenant]) -> Tenant:
    """A fresh tenant whose environment id has no events yet."""
    return await eventless_tenant(server, make_tenant)


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = demo.generate(7, 3000, seed=11, anchor=ANCHOR)
    again = demo.generate(7, 3000, seed=11, anchor=ANCHOR)
    other = demo.generate(7, 3000, seed=12, anchor=ANCHOR)
    assert first.digest() == again.digest()
    assert first.digest() != other.digest()


def test_size_window_and_shape() -> None:
    data = demo.generate(3, 20_000, seed=5, anchor=ANCHOR)
    events = [row for chunk in data.events(7_000) for row in chunk]
    assert len(events) == 20_000
    start = dt.datetime(2023, 12, 17, tzinfo=dt.UTC)  # 90 days ending on the anchor
    end = dt.datetime(2024, 3, 16, tzinfo=dt.UTC)
    assert all(start <= e.timestamp < end for e in events)
    assert {e.timestamp.date() for e in events} == {
        (start + dt.timedelta(days=d)).date() for d in range(demo.DAYS)
    }
    assert {e.event for e in events} == {"$pageview", "$autocapture", "signed_up", "purchase"}
    assert len({e.uuid for e in events}) == len(events)

    by_event: dict[str, set[object]] = defaultdict(set)
    accounts: dict[str, set[object]] = defaultdict(set)
    for e in events:
        by_event[e.event].add(e.person_id)
        props = json.loads(e.properties)
        assert props["$session_id"] and props["$browser"] and props["$geoip_country_code"]
        accounts[props["$group_0"]].add(e.person_id)
        if e.event == "$pageview":
            assert props["$current_url"].startswith(demo.SITE)
        if e.event == "purchase":
            assert props["amount"] > 0 and props["currency"]
        assert json.loads(e.person_properties)["email"]
    # Accounts (group type 0): on every event; people of one company share theirs.
    assert all(accounts) and max(len(people) for people in accounts.values()) > 1
    # Funnel: every buyer signed up, everyone who signed up viewed a page, with drop-off.
    assert by_event["purchase"] <= by_event["signed_up"] <= by_event["$pageview"]
    assert 0 < len(by_event["purchase"]) < len(by_event["signed_up"]) < len(by_event["$pageview"])

    # Growth: the last 30 days hold more events than the first 30; weekends are quieter.
    days = [(e.timestamp.date() - start.date()).days for e in events]
    assert sum(d >= 60 for d in days) > 1.5 * sum(d < 30 for d in days)
    weekend = sum(e.timestamp.weekday() >= 5 for e in events) / len(events)
    assert weekend < 2 / 7
    # Power-law pages: the home page is the most viewed.
    urls: dict[str, int] = defaultdict(int)
    for e in events:
        if e.event == "$pageview":
            urls[json.loads(e.properties)["$current_url"]] += 1
    assert max(urls, key=urls.__getitem__) == demo.SITE + "/"
    # A few internal users are marked as test accounts.
    persons = [json.loads(p.properties) for p in data.persons()]
    internal = [p for p in persons if p.get("is_test")]
    assert internal and all(p["email"].endswith("@example.com") for p in internal)
    assert all(not p["email"].endswith("@example.com") for p in persons if not p.get("is_test"))


async def test_bulk_columns_store_the_same_events(server: Server, tenant: Tenant) -> None:
    env = tenant.environment_id
    data = demo.generate(env, 5_000, seed=2)
    store = server.app.events

    def insert() -> None:
        for columns in data.columns(2_000):
            store.insert_event_columns(columns)

    await asyncio.to_thread(insert)
    assert await asyncio.to_thread(store.count_events, env) == 5_000
    rows = await asyncio.to_thread(
        store.query,
        "SELECT uuid, event, person_id, timestamp, properties, elements_chain FROM events "
        "WHERE team_id = {env:Int64}",
        {"env": env},
    )
    expected = {
        (e.uuid, e.event, e.person_id, e.timestamp.replace(tzinfo=None), e.properties, e.elements_chain)
        for chunk in data.events()
        for e in chunk
    }
    assert set(rows) == expected
    funnel = await asyncio.to_thread(
        store.query,
        "SELECT event, uniqExact(person_id) FROM events WHERE team_id = {env:Int64} GROUP BY event",
        {"env": env},
    )
    people = dict(funnel)
    assert people["purchase"] <= people["signed_up"] <= people["$pageview"]
    # Ingestion derived the persons from the events' $set / $set_once: the generator's own persons,
    # created at their first event, although chunks hold sessions out of time order.
    persons = await asyncio.to_thread(store.current_persons, env)
    assert _as_dicts(persons) == {p.id: (json.loads(p.properties), p.created_at) for p in data.persons()}


def _as_dicts(persons: dict[Any, tuple[str, dt.datetime]]) -> dict[Any, tuple[Any, dt.datetime]]:
    return {k: (json.loads(text), created) for k, (text, created) in persons.items()}


def test_autocapture_events_carry_realistic_chains() -> None:
    data = demo.generate(3, 4_000, seed=9, anchor=ANCHOR)
    clicks = [e for chunk in data.events() for e in chunk if e.event == "$autocapture"]
    assert clicks and all(e.elements_chain for e in clicks)
    assert all(not e.elements_chain for chunk in data.events() for e in chunk if e.event != "$autocapture")
    chains = {e.elements_chain for e in clicks}
    assert len(chains) == len(demo.CLICK_TARGETS)
    # Buttons, links with an href, texts, classes, nested in divs and forms.
    assert any(c.startswith("a.nav-link:") and 'href="/pricing"' in c.split(";")[0] for c in chains)
    assert any(c.startswith("button.") and ";form." in c for c in chains)
    assert any(c.startswith("span:") and ";a.btn.btn-cta:" in c for c in chains)
    for e in clicks:
        text = json.loads(e.properties)["$el_text"]
        assert f'text="{text}"' in e.elements_chain.split(";")[0] or e.elements_chain.startswith("span:")


async def test_demo_through_the_service_keeps_the_same_persons(server: Server, tenant: Tenant) -> None:
    """IngestEvents (in chunks out of time order) ends with the persons the generator describes."""
    env = tenant.environment_id
    data = demo.generate(env, 3_000, seed=6)
    stub = egrpc.EventsServiceStub(server.channel)
    requests = [
        epb.IngestEventsRequest(environment_id=env, events=[to_proto(row) for row in chunk])
        for chunk in data.events(700)
    ]
    reply = await stub.IngestEvents(iter(requests), metadata=bearer(tenant.key("event:write")), timeout=120)
    assert (reply.accepted, reply.rejected) == (3_000, 0)
    persons = await asyncio.to_thread(server.app.events.current_persons, env)
    assert _as_dicts(persons) == {p.id: (json.loads(p.properties), p.created_at) for p in data.persons()}
    chains = await asyncio.to_thread(
        server.app.events.query,
        "SELECT countIf(elements_chain != ''), countIf(event = '$autocapture') FROM events "
        "WHERE team_id = {env:Int64}",
        {"env": env},
    )
    assert chains[0][0] == chains[0][1] > 0


def test_environment_set_up_is_idempotent(server: Server, tenant: Tenant) -> None:
    created = demo.set_up_environment(server.db, tenant.user_id, tenant.environment_id)
    assert created == len(demo.DEMO_INSIGHTS) == 5
    assert demo.set_up_environment(server.db, tenant.user_id, tenant.environment_id) == 0
    with server.db.session() as session:
        env = session.get(Environment, tenant.environment_id)
        assert env is not None
        assert env.test_account_filters == demo.TEST_ACCOUNT_FILTERS
        stored = session.scalars(select(Insight).where(Insight.environment_id == tenant.environment_id)).all()
        queries = [query_pb2.QueryNode.FromString(i.query) for i in stored]
    kinds = [q.insight_viz_node.source.WhichOneof("query") for q in queries]
    assert kinds == ["trends_query"] * 5
    maths = [q.insight_viz_node.source.trends_query.series[0].events_node.math for q in queries]
    assert query_pb2.MATH_TYPE_DAU in maths and query_pb2.MATH_TYPE_WEEKLY_ACTIVE in maths
    assert query_pb2.MATH_TYPE_SUM in maths


async def test_cli_demo_if_empty_generates_once(tmp_path: Path) -> None:
    flags = cli_flags(tmp_path)

    async def run() -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "demo",
            "--events",
            "3000",
            "--seed",
            "4",
            "--if-empty",
            *flags,
            cwd=REPO,
            env=dict(os.environ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await run()
    assert code == 0, (out, err)
    assert "demo: 3000 events" in out and "5 demo insights created" in out
    code, out, err = await run()
    assert code == 0, (out, err)
    assert "already has 3000 events" in out
