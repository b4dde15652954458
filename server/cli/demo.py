"""A deterministic, realistic product-analytics dataset for the demo environment ("Hedgebox", a file-sharing app).

Same seed and same anchor day → the same persons and events, byte for byte. Generation is
vectorised with numpy; rows are materialised chunk by chunk so memory stays bounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from generated.insights.v1 import query_pb2
from server.domain.accounts import environment_info
from server.domain.ingest import person_id_for
from server.domain.insights import InsightFields, Insights
from server.principal import Principal
from server.queries.common.codec import from_reference_json
from storage.db import Database
from storage.elements import Element, to_chain
from storage.events import EventRow, PersonRow
from storage.models import Environment, Insight

DAYS = 90
SITE = "https://hedgebox.example"
TEST_ACCOUNT_FILTERS: list[dict[str, Any]] = [
    {"key": "email", "value": "@example.com", "operator": "not_icontains", "type": "person"}
]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US_PER_DAY = 86_400_000_000

# Pages by popularity rank: views follow a power law over this order.
PATHS = [
    "/",
    "/pricing",
    "/files",
    "/features",
    "/blog",
    "/docs",
    "/login",
    "/signup",
    "/files/shared",
    "/docs/getting-started",
    "/account/settings",
    "/blog/sharing-large-files",
    "/integrations",
    "/about",
    "/account/billing",
    "/docs/api",
    "/blog/hedgebox-2-0",
    "/changelog",
    "/security",
    "/careers",
    "/contact",
    "/docs/sync-client",
    "/blog/remote-teams",
    "/legal/privacy",
    "/legal/terms",
    "/status",
    "/customers",
    "/docs/sharing-permissions",
    "/blog/encryption-explained",
    "/partners",
]
BROWSERS = (["Chrome", "Safari", "Firefox", "Edge", "Opera"], [0.58, 0.22, 0.10, 0.08, 0.02])
DESKTOP_OS = (["Windows", "Mac OS X", "Linux"], [0.60, 0.32, 0.08])
MOBILE_OS = (["iOS", "Android"], [0.55, 0.45])
COUNTRIES = (
    ["US", "GB", "DE", "IN", "FR", "BR", "CA", "NL", "ES", "AU", "JP", "PL"],
    [0.34, 0.10, 0.09, 0.09, 0.07, 0.06, 0.05, 0.04, 0.04, 0.04, 0.05, 0.03],
)
CURRENCY = {"GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "PL": "PLN", "JP": "JPY"}
DESKTOP_WIDTHS = [1920, 1440, 1536, 1366, 2560, 1280]
MOBILE_WIDTHS = [390, 414, 375, 412, 360]
FIRST_NAMES = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
]
LAST_NAMES = [
    "Novak",
    "Okafor",
    "Schmidt",
    "Garcia",
    "Kim",
    "Rossi",
    "Dubois",
    "Silva",
    "Ito",
    "Patel",
    "Brown",
    "Kowalski",
    "Jansen",
    "Haddad",
    "Larsen",
    "Moreau",
]
DOMAINS = ["gmail.com", "outlook.com", "proton.me", "yahoo.com", "fastmail.com", "acme.io", "globex.dev"]


def _toolbar_button(text: str, index: int) -> list[Element]:
    """A toolbar button of the files page."""
    return [
        Element(
            "button",
            ("btn", "btn-secondary"),
            text,
            nth_child=index,
            nth_of_type=index,
            attributes={"attr__class": "btn btn-secondary", "attr__type": "button"},
        ),
        Element("div", ("toolbar",), nth_child=1, nth_of_type=1, attributes={"attr__class": "toolbar"}),
        Element(
            "main",
            ("files",),
            attr_id="files",
            nth_child=2,
            nth_of_type=1,
            attributes={"attr__class": "files", "attr__id": "files"},
        ),
        Element("body", nth_child=2, nth_of_type=1),
    ]


def _row_action(text: str, index: int) -> list[Element]:
    """An action button in a row of the file list."""
    return [
        Element(
            "button",
            ("file-action",),
            text,
            nth_child=index,
            nth_of_type=index,
            attributes={"attr__class": "file-action", "attr__data-action": text.lower().replace(" ", "-")},
        ),
        Element("li", ("file-row",), nth_child=3, nth_of_type=3, attributes={"attr__class": "file-row"}),
        Element("ul", ("file-list",), nth_child=2, nth_of_type=1, attributes={"attr__class": "file-list"}),
        Element(
            "main",
            ("files",),
            attr_id="files",
            nth_child=2,
            nth_of_type=1,
            attributes={"attr__class": "files", "attr__id": "files"},
        ),
        Element("body", nth_child=2, nth_of_type=1),
    ]


def _nav_link(text: str, href: str, index: int) -> list[Element]:
    """A link of the header's navigation."""
    return [
        Element(
            "a",
            ("nav-link",),
            text,
            href=href,
            nth_child=1,
            nth_of_type=1,
            attributes={"attr__class": "nav-link", "attr__href": href},
        ),
        Element(
            "li", ("nav-item",), nth_child=index, nth_of_type=index, attributes={"attr__class": "nav-item"}
        ),
        Element("ul", ("nav",), nth_child=2, nth_of_type=1, attributes={"attr__class": "nav"}),
        Element("nav", nth_child=1, nth_of_type=1),
        Element(
            "header", ("site-header",), nth_child=1, nth_of_type=1, attributes={"attr__class": "site-header"}
        ),
        Element("body", nth_child=2, nth_of_type=1),
    ]


# What visitors click ($autocapture): the element's text and its chain (the element, then its
# ancestors): toolbar and row buttons, a submit button inside a form, a call-to-action link with a
# nested span, and the header's links.
CLICK_TARGETS: list[tuple[str, list[Element]]] = [
    ("Upload", _toolbar_button("Upload", 1)),
    ("New folder", _toolbar_button("New folder", 2)),
    ("Share", _row_action("Share", 1)),
    ("Download", _row_action("Download", 2)),
    ("Copy link", _row_action("Copy link", 3)),
    (
        "Invite",
        [
            Element(
                "button",
                ("btn", "btn-primary"),
                "Invite",
                nth_child=2,
                nth_of_type=1,
                attributes={"attr__class": "btn btn-primary", "attr__type": "submit"},
            ),
            Element(
                "form",
                ("invite-form",),
                attr_id="invite",
                nth_child=1,
                nth_of_type=1,
                attributes={
                    "attr__class": "invite-form",
                    "attr__id": "invite",
                    "attr__action": "/team/invite",
                },
            ),
            Element("div", ("modal",), nth_child=4, nth_of_type=2, attributes={"attr__class": "modal"}),
            Element("body", nth_child=2, nth_of_type=1),
        ],
    ),
    (
        "Start free trial",
        [
            Element("span", nth_child=1, nth_of_type=1, text="Start free trial"),
            Element(
                "a",
                ("btn", "btn-cta"),
                "Start free trial",
                href="/signup",
                nth_child=2,
                nth_of_type=1,
                attributes={"attr__class": "btn btn-cta", "attr__href": "/signup"},
            ),
            Element("div", ("hero",), nth_child=1, nth_of_type=1, attributes={"attr__class": "hero"}),
            Element("section", nth_child=2, nth_of_type=1),
            Element("body", nth_child=2, nth_of_type=1),
        ],
    ),
    ("Pricing", _nav_link("Pricing", "/pricing", 1)),
    ("Docs", _nav_link("Docs", "/docs", 2)),
    ("Log in", _nav_link("Log in", "/login", 3)),
]
CLICK_TEXTS = [text for text, _ in CLICK_TARGETS]
CLICK_CHAINS = [to_chain(chain) for _, chain in CLICK_TARGETS]
PRICES = ([9.99, 19.99, 49.0, 99.0, 249.0], [0.35, 0.3, 0.2, 0.1, 0.05])
# Daily seasonality (UTC hours): quiet nights, busy working hours.
HOUR_WEIGHTS = np.array(
    [2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 6, 8, 9, 9.5, 9, 9, 9.5, 9, 8.5, 7.5, 6.5, 5.5, 4.5, 4, 3.5, 2.5]
)
# Event kinds: codes into KINDS.
PAGEVIEW, AUTOCAPTURE, SIGNED_UP, PURCHASE = 0, 1, 2, 3
KINDS = ["$pageview", "$autocapture", "signed_up", "purchase"]


def _str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Dataset:
    """The generated data as compact arrays; `persons()` and `events()` materialise rows."""

    environment_id: int
    start: dt.datetime  # 00:00 UTC of the first day
    person_distinct: list[str]
    person_ids: list[uuid.UUID]
    person_ints: list[int]
    person_country: list[str]
    person_json: list[str]
    # The `$set` / `$set_once` members a person's first event carries (identify on the first
    # visit), and the `$set` of their purchases (the plan they bought): ingestion derives the
    # persons from these.
    person_updates: list[str]
    person_plan_set: list[str]
    person_created_us: np.ndarray  # first event per person (µs since epoch), -1 without events
    session_person: np.ndarray
    session_json: list[str]  # the session's shared properties, as JSON members without braces
    ev_us: np.ndarray  # event timestamps, µs since epoch
    ev_session: np.ndarray
    ev_kind: np.ndarray
    ev_path: np.ndarray
    ev_amount: np.ndarray
    ev_uuid_hi: np.ndarray
    ev_uuid_lo: np.ndarray
    ev_click: np.ndarray
    ev_first: np.ndarray  # the event is its person's first

    def __len__(self) -> int:
        return len(self.ev_us)

    def persons(self) -> Iterator[PersonRow]:
        """Persons that have events: the rows ingestion derives from the events' `$set`/`$set_once`."""
        for i, created in enumerate(self.person_created_us.tolist()):
            if created >= 0:
                yield PersonRow(
                    self.environment_id,
                    self.person_ids[i],
                    self.person_json[i],
                    _EPOCH + dt.timedelta(microseconds=created),
                )

    def events(self, chunk: int = 100_000) -> Iterator[list[EventRow]]:
        """The events in generation order, `chunk` rows at a time."""
        for lo in range(0, len(self), chunk):
            yield self._rows(lo, min(lo + chunk, len(self)))

    def _rows(self, lo: int, hi: int) -> list[EventRow]:
        env = self.environment_id
        persons, uuids, stamps, props = self._parts(lo, hi)
        kinds = self.ev_kind[lo:hi].tolist()
        chains = self._chains(lo, hi)
        return [
            EventRow(
                env,
                uuid.UUID(int=u),
                KINDS[k],
                self.person_distinct[p],
                self.person_ids[p],
                _EPOCH + dt.timedelta(microseconds=us),
                text,
                self.person_json[p],
                chain,
            )
            for p, u, us, text, k, chain in zip(persons, uuids, stamps, props, kinds, chains, strict=True)
        ]

    def _chains(self, lo: int, hi: int) -> list[str]:
        """The elements chain of each event of a range: the clicked target's for autocapture, else ''."""
        return [
            CLICK_CHAINS[click] if kind == AUTOCAPTURE else ""
            for kind, click in zip(self.ev_kind[lo:hi].tolist(), self.ev_click[lo:hi].tolist(), strict=True)
        ]

    def columns(self, chunk: int = 100_000) -> Iterator[list[list[Any]]]:
        """The same events as `events`, as columns in EVENT_COLUMNS order with UUIDs as integers
        and timestamps as microseconds: no per-row objects, for fast direct inserts."""
        for lo in range(0, len(self), chunk):
            hi = min(lo + chunk, len(self))
            persons, uuids, stamps, props = self._parts(lo, hi)
            yield [
                [self.environment_id] * (hi - lo),
                uuids,
                [KINDS[k] for k in self.ev_kind[lo:hi].tolist()],
                [self.person_distinct[p] for p in persons],
                [self.person_ints[p] for p in persons],
                stamps,
                props,
                [self.person_json[p] for p in persons],
                self._chains(lo, hi),
            ]

    def _parts(self, lo: int, hi: int) -> tuple[list[int], list[int], list[int], list[str]]:
        """Person indexes, event UUIDs (as ints), timestamps (µs) and property texts of a range."""
        urls = [f'"$current_url":{_str(SITE + p)},"$pathname":{_str(p)}' for p in PATHS]
        clicks = [f'"$event_type":"click","$el_text":{_str(t)}' for t in CLICK_TEXTS]
        signup_url = f'"$current_url":{_str(SITE + "/signup")},"$pathname":"/signup"'
        sessions = self.ev_session[lo:hi].tolist()
        persons = self.session_person[self.ev_session[lo:hi]].tolist()
        props: list[str] = []
        for s, p, kind, path, amount, click, first in zip(
            sessions,
            persons,
            self.ev_kind[lo:hi].tolist(),
            self.ev_path[lo:hi].tolist(),
            self.ev_amount[lo:hi].tolist(),
            self.ev_click[lo:hi].tolist(),
            self.ev_first[lo:hi].tolist(),
            strict=True,
        ):
            base = self.session_json[s]
            if first:
                # A person's first event is always the landing pageview of their first session.
                props.append(f"{{{base},{urls[path]},{self.person_updates[p]}}}")
            elif kind == PAGEVIEW:
                props.append(f"{{{base},{urls[path]}}}")
            elif kind == AUTOCAPTURE:
                props.append(f"{{{base},{urls[path]},{clicks[click]}}}")
            elif kind == SIGNED_UP:
                props.append(f"{{{base},{signup_url}}}")
            else:
                currency = CURRENCY.get(self.person_country[p], "USD")
                props.append(
                    f'{{{base},"amount":{amount},"currency":"{currency}",{self.person_plan_set[p]}}}'
                )
        uuids = [
            (h << 64) | low
            for h, low in zip(self.ev_uuid_hi[lo:hi].tolist(), self.ev_uuid_lo[lo:hi].tolist(), strict=True)
        ]
        return persons, uuids, self.ev_us[lo:hi].tolist(), props

    def digest(self) -> str:
        """SHA-256 over every person and event row: equal digests mean identical data."""
        h = hashlib.sha256()
        for person in self.persons():
            h.update(repr(person).encode())
        for chunk in self.events():
            for row in chunk:
                h.update(repr(row).encode())
        return h.hexdigest()


# Email domains of companies: their people share one account (group type 0); everyone else has
# an account of their own.
_COMPANY_DOMAINS = frozenset({"acme.io", "globex.dev"})


def _account(person: int, email: str, internal: bool) -> str:
    """The person's account key, the `$group_0` of its events (no random draw: the rest of the
    dataset stays as it was)."""
    domain = email.rsplit("@", 1)[1]
    if internal:
        return "hedgebox"
    if domain in _COMPANY_DOMAINS:
        return domain
    return f"account-{person}"


def anchor_day(now: dt.datetime | None = None) -> dt.date:
    """Today (UTC): the last of the demo's 90 days."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()


def _uuid4_bits(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random version-4 UUIDs as (high, low) uint64 pairs."""
    bits = rng.integers(0, 2**64, size=(size, 2), dtype=np.uint64, endpoint=False)
    bits[:, 0] = (bits[:, 0] & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    bits[:, 1] = (bits[:, 1] & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    return bits


def _pick(rng: np.random.Generator, options: tuple[list[str], list[float]], size: int) -> np.ndarray:
    weights = np.asarray(options[1], dtype=float)
    return rng.choice(len(options[0]), size=size, p=weights / weights.sum())


def generate(environment_id: int, events: int, seed: int = 0, anchor: dt.date | None = None) -> Dataset:
    """Persons, sessions and exactly `events` events over the 90 days ending on `anchor` (today)."""
    if events < 1:
        raise ValueError("events must be >= 1")
    rng = np.random.default_rng(seed)
    anchor = anchor or anchor_day()
    start = dt.datetime.combine(anchor - dt.timedelta(days=DAYS - 1), dt.time(), dt.UTC)
    start_us = int((start - _EPOCH) / dt.timedelta(microseconds=1))
    end_us = start_us + DAYS * _US_PER_DAY - 1

    # Persons: a third predate the window; the rest join at a growing rate.
    n_persons = max(20, events // 40)
    internal = max(2, n_persons // 200)
    growth = np.exp(np.log(4.0) * np.arange(DAYS) / (DAYS - 1))
    join_day = rng.choice(DAYS, size=n_persons, p=growth / growth.sum())
    join_day[rng.random(n_persons) < 0.33] = 0
    join_day[:internal] = 0
    activity = rng.lognormal(0.0, 1.0, n_persons)
    activity[:internal] *= 3  # the team uses its own product a lot
    browser = _pick(rng, BROWSERS, n_persons)
    mobile = rng.random(n_persons) < 0.3
    os_desktop = _pick(rng, DESKTOP_OS, n_persons)
    os_mobile = _pick(rng, MOBILE_OS, n_persons)
    country = _pick(rng, COUNTRIES, n_persons)
    width_desktop = rng.choice(DESKTOP_WIDTHS, n_persons)
    width_mobile = rng.choice(MOBILE_WIDTHS, n_persons)
    first = rng.choice(len(FIRST_NAMES), n_persons)
    last = rng.choice(len(LAST_NAMES), n_persons)
    domain = rng.choice(len(DOMAINS), n_persons)
    distinct_bits = _uuid4_bits(rng, n_persons)

    # Sessions: 2 + geometric events each (mean 6), on days weighted by growth and weekday.
    lengths = 1 + rng.geometric(1 / 5, size=events // 3 + 2)
    ends = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(ends, events)) + 1
    lengths = lengths[:n_sessions].copy()
    lengths[-1] -= int(ends[n_sessions - 1]) - events
    weekday = np.array([(start + dt.timedelta(days=d)).weekday() for d in range(DAYS)])
    day_weight = growth * np.where(weekday >= 5, 0.6, 1.0)
    session_day = rng.choice(DAYS, size=n_sessions, p=day_weight / day_weight.sum())
    # The session's person: weighted by activity among those who had joined by that day.
    order = np.argsort(join_day, kind="stable")
    cumulative = np.cumsum(activity[order])
    eligible = np.searchsorted(join_day[order], session_day, side="right")
    targets = rng.random(n_sessions) * cumulative[eligible - 1]
    session_person = order[np.minimum(np.searchsorted(cumulative, targets, side="right"), n_persons - 1)]
    hour = rng.choice(24, size=n_sessions, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    session_start = (
        start_us
        + session_day.astype(np.int64) * _US_PER_DAY
        + hour.astype(np.int64) * 3_600_000_000
        + rng.integers(0, 3_600_000_000, n_sessions)
    )
    session_bits = _uuid4_bits(rng, n_sessions)

    # Events: a landing pageview, then pageviews and clicks seconds to minutes apart.
    ev_session = np.repeat(np.arange(n_sessions), lengths)
    first_of_session = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    gaps = rng.exponential(40e6, events).astype(np.int64)
    gaps[first_of_session] = 0
    cum = np.cumsum(gaps)
    ev_us = session_start[ev_session] + cum - cum[first_of_session][ev_session]
    np.minimum(ev_us, end_us, out=ev_us)
    ev_kind = np.where(rng.random(events) < 0.62, PAGEVIEW, AUTOCAPTURE).astype(np.int8)
    ev_kind[first_of_session] = PAGEVIEW
    zipf = 1.0 / np.arange(1, len(PATHS) + 1) ** 1.1
    ev_path = rng.choice(len(PATHS), size=events, p=zipf / zipf.sum()).astype(np.int16)
    ev_click = rng.integers(0, len(CLICK_TEXTS), events).astype(np.int8)
    last_of_session = first_of_session + lengths - 1

    # Funnel: some visitors sign up in one of their first sessions; some of those buy later.
    by_person = np.lexsort((session_start, session_person))
    sorted_person = session_person[by_person]
    person_first = np.searchsorted(sorted_person, np.arange(n_persons), side="left")
    person_sessions = np.searchsorted(sorted_person, np.arange(n_persons), side="right") - person_first
    rank = np.empty(n_sessions, dtype=np.int64)
    rank[by_person] = np.arange(n_sessions) - person_first[sorted_person]
    signs_up = (rng.random(n_persons) < 0.3) & (person_sessions > 0)
    signs_up[:internal] = person_sessions[:internal] > 0
    signup_rank = (rng.random(n_persons) * np.minimum(person_sessions, 3)).astype(np.int64)
    buyer = signs_up & (rng.random(n_persons) < 0.45)
    long_enough = lengths >= 2
    signup_session = signs_up[session_person] & (rank == signup_rank[session_person]) & long_enough
    purchase_session = (
        buyer[session_person]
        & (rank > signup_rank[session_person])
        & long_enough
        & (rng.random(n_sessions) < 0.2)
    )
    # A signup session too short to hold the signup means the person never signed up.
    signed = np.zeros(n_persons, dtype=bool)
    signed[session_person[signup_session]] = True
    purchase_session &= signed[session_person]
    ev_kind[last_of_session[signup_session]] = SIGNED_UP
    ev_kind[last_of_session[purchase_session]] = PURCHASE
    price_weights = np.asarray(PRICES[1])
    prices = rng.choice(len(PRICES[0]), size=events, p=price_weights / price_weights.sum())
    ev_amount = np.where(ev_kind == PURCHASE, np.asarray(PRICES[0])[prices], 0.0)
    uuid_bits = _uuid4_bits(rng, events)

    # Person properties (static over the window) and when each person was first seen.
    purchased = np.zeros(n_persons, dtype=bool)
    purchased[session_person[purchase_session]] = True
    plan_roll = rng.random(n_persons)
    person_created = np.full(n_persons, -1, dtype=np.int64)
    has = person_sessions > 0
    person_created[has] = session_start[by_person[person_first[has]]]
    # Each person's first event: the first of their earliest session (a landing pageview).
    first_event = np.full(n_persons, -1, dtype=np.int64)
    first_event[has] = first_of_session[by_person[person_first[has]]]
    ev_first = np.zeros(events, dtype=bool)
    ev_first[first_event[has]] = True

    person_distinct: list[str] = []
    person_account: list[str] = []
    person_ids: list[uuid.UUID] = []
    person_json: list[str] = []
    person_updates: list[str] = []
    person_plan_set: list[str] = []
    for i in range(n_persons):
        distinct = str(uuid.UUID(int=(int(distinct_bits[i, 0]) << 64) | int(distinct_bits[i, 1])))
        name_first, name_last = FIRST_NAMES[first[i]], LAST_NAMES[last[i]]
        is_test = i < internal
        email = (
            f"{name_first.lower()}@example.com"
            if is_test
            else f"{name_first.lower()}.{name_last.lower()}{i}@{DOMAINS[domain[i]]}"
        )
        plan = ("business" if plan_roll[i] < 0.2 else "pro") if purchased[i] else "free"
        props: dict[str, Any] = {
            "email": email,
            "name": f"{name_first} {name_last}",
            "$browser": BROWSERS[0][browser[i]],
            "$os": MOBILE_OS[0][os_mobile[i]] if mobile[i] else DESKTOP_OS[0][os_desktop[i]],
            "$geoip_country_code": COUNTRIES[0][country[i]],
            "plan": plan,
        }
        if is_test:
            props["is_test"] = True
        # Identified on the first visit (plan "free" until a purchase sets the one bought), with the
        # landing page recorded once.
        landing = PATHS[int(ev_path[first_event[i]])] if first_event[i] >= 0 else "/"
        props["$initial_pathname"] = landing
        identify = {k: v for k, v in props.items() if k != "$initial_pathname"} | {"plan": "free"}
        person_updates.append(
            f'"$set":{json.dumps(identify, ensure_ascii=False, separators=(",", ":"))},'
            f'"$set_once":{{"$initial_pathname":{_str(landing)}}}'
        )
        person_plan_set.append(f'"$set":{{"plan":{_str(plan)}}}')
        person_distinct.append(distinct)
        person_account.append(_account(i, email, is_test))
        person_ids.append(person_id_for(environment_id, distinct))
        person_json.append(json.dumps(props, ensure_ascii=False, separators=(",", ":")))

    session_json: list[str] = []
    for s, p in enumerate(session_person.tolist()):
        sid = uuid.UUID(int=(int(session_bits[s, 0]) << 64) | int(session_bits[s, 1]))
        os_name = MOBILE_OS[0][os_mobile[p]] if mobile[p] else DESKTOP_OS[0][os_desktop[p]]
        width = width_mobile[p] if mobile[p] else width_desktop[p]
        session_json.append(
            f'"$session_id":"{sid}","$browser":{_str(BROWSERS[0][browser[p]])},"$os":{_str(os_name)},'
            f'"$device_type":"{"Mobile" if mobile[p] else "Desktop"}",'
            f'"$geoip_country_code":"{COUNTRIES[0][country[p]]}","$screen_width":{int(width)},"$lib":"web",'
            f'"$group_0":{_str(person_account[p])}'
        )

    return Dataset(
        environment_id=environment_id,
        start=start,
        person_distinct=person_distinct,
        person_ids=person_ids,
        person_ints=[p.int for p in person_ids],
        person_country=[COUNTRIES[0][c] for c in country],
        person_json=person_json,
        person_updates=person_updates,
        person_plan_set=person_plan_set,
        person_created_us=person_created,
        session_person=session_person,
        session_json=session_json,
        ev_us=ev_us,
        ev_session=ev_session,
        ev_kind=ev_kind,
        ev_path=ev_path,
        ev_amount=ev_amount,
        ev_uuid_hi=uuid_bits[:, 0],
        ev_uuid_lo=uuid_bits[:, 1],
        ev_click=ev_click,
        ev_first=ev_first,
    )


# ---------------------------------------------------------------------------
# The demo environment's metadata: test-account filters and a few insights
# ---------------------------------------------------------------------------


def _trends(series: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"kind": "InsightVizNode", "source": {"kind": "TrendsQuery", "series": series, **extra}}


def _events_node(event: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "EventsNode", "event": event, "name": event, **extra}


DEMO_INSIGHTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Daily pageviews by browser",
        "Pageviews per day over the last 90 days, broken down by browser.",
        _trends(
            [_events_node("$pageview", math="total")],
            interval="day",
            dateRange={"date_from": "-90d"},
            breakdownFilter={"breakdown": "$browser", "breakdown_type": "event"},
            filterTestAccounts=True,
        ),
    ),
    (
        "Daily active users",
        "Distinct persons with a pageview, per day.",
        _trends(
            [_events_node("$pageview", math="dau")],
            interval="day",
            dateRange={"date_from": "-30d"},
            filterTestAccounts=True,
        ),
    ),
    (
        "Weekly active users",
        "Distinct persons with any event in the 7 days up to each day.",
        _trends(
            [{"kind": "EventsNode", "event": None, "name": "All events", "math": "weekly_active"}],
            interval="day",
            dateRange={"date_from": "-30d"},
            filterTestAccounts=True,
        ),
    ),
    (
        "Revenue by month",
        "Sum of purchase amounts per month.",
        _trends(
            [_events_node("purchase", math="sum", math_property="amount")],
            interval="month",
            dateRange={"date_from": "-90d"},
            filterTestAccounts=True,
        ),
    ),
    (
        "Signups (last 30 days)",
        "Number of signed_up events in the last 30 days.",
        _trends(
            [_events_node("signed_up", math="total")],
            interval="day",
            dateRange={"date_from": "-30d"},
            trendsFilter={"display": "BoldNumber"},
            filterTestAccounts=True,
        ),
    ),
]


def demo_queries() -> list[tuple[str, str, query_pb2.QueryNode]]:
    """The demo insights as (name, description, query node)."""
    return [(n, d, from_reference_json(q, query_pb2.QueryNode)) for n, d, q in DEMO_INSIGHTS]


def set_up_environment(db: Database, user_id: int, environment_id: int) -> int:
    """Sets the test-account filters and creates the demo insights when the environment has
    none yet; returns how many insights were created."""
    with db.session() as session:
        env = session.get(Environment, environment_id)
        if env is None:
            raise ValueError(f"environment {environment_id} does not exist")
        env.test_account_filters = list(TEST_ACCOUNT_FILTERS)
        info = environment_info(env)
        existing = session.scalar(
            select(func.count()).select_from(Insight).where(Insight.environment_id == environment_id)
        )
    if existing:
        return 0
    principal = Principal(
        key_id=0, user_id=user_id, scopes=frozenset({"*"}), environments={environment_id: info}
    )
    insights = Insights(db)
    for name, description, query in demo_queries():
        insights.create(
            principal, environment_id, InsightFields(name=name, description=description, query=query)
        )
    return len(DEMO_INSIGHTS)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def run_demo(
    settings: Any,
    events: int,
    seed: int,
    environment_id: int | None,
    if_empty: bool,
    api_key: str,
    batch_size: int = 100_000,
) -> int:
    """`python -m server demo`: generates the dataset and loads it (through a running server when
    one answers, else into the store), then sets up the environment's filters and insights."""
    import sys
    import time

    from tqdm import tqdm  # type: ignore[import-untyped]

    from server.cli.loader import (
        LoadSummary,
        TransportError,
        client_target,
        ingest_over_grpc,
        resolve_environment,
        server_answers,
    )
    from storage.events import EventStore

    if events < 1:
        print("error: --events must be >= 1", file=sys.stderr)
        return 2
    try:
        user_id, env_id = resolve_environment(settings.database_url, environment_id)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = client_target(settings.listen)
    through_server = server_answers(target)
    if through_server and not api_key:
        print(
            f"error: a server answers at {target}: give --api-key or INSIGHTS_API_KEY "
            "(a key with the event:write scope)",
            file=sys.stderr,
        )
        return 2
    store = None if through_server else EventStore(settings.events_dsn, cluster=settings.clickhouse_cluster)
    try:
        if store is not None:
            store.ensure_schema()
        if if_empty:
            if store is None:
                # The embedded store is the server's now; only it can tell, and a duplicate
                # dataset is worse than none.
                print(f"a server answers at {target}: not checking for events, nothing generated")
                return 0
            existing = store.count_events(env_id)
            if existing:
                print(f"environment {env_id} already has {existing} events: no demo data generated")
                return 0
        began = time.monotonic()
        data = generate(env_id, events, seed)
        generated = time.monotonic() - began
        with tqdm(total=len(data), unit="ev", unit_scale=True, desc="demo events") as bar:

            def chunks() -> Iterator[list[tuple[int, EventRow]]]:
                index = 0
                for chunk in data.events(batch_size):
                    yield list(enumerate(chunk, index))
                    index += len(chunk)
                    bar.update(len(chunk))

            summary = LoadSummary(format="demo")
            if store is None:
                where = f"through the server at {target}"
                ingest_over_grpc(target, api_key, env_id, chunks(), summary)
                persons = 0
            else:
                where = f"into {settings.events_dsn}"
                for columns in data.columns(batch_size):
                    summary.loaded += store.insert_event_columns(columns)
                    bar.update(len(columns[0]))
                # Ingestion kept the persons current from the events' $set / $set_once.
                persons = store.count_persons(env_id)
    except TransportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    elapsed = time.monotonic() - began
    last_day = (data.start + dt.timedelta(days=DAYS - 1)).date()
    from storage.db import Database

    db = Database(settings.database_url)
    try:
        created = set_up_environment(db, user_id, env_id)
    finally:
        db.close()
    print(
        f"demo: {summary.loaded} events (seed {seed}, {DAYS} days to {last_day}) {where} "
        f"for environment {env_id} in {elapsed:.1f}s (generated in {generated:.1f}s)"
        + (f", {persons} persons" if persons else ", persons kept by the server")
    )
    print(f"test-account filters set; {created} demo insights created")
    if summary.rejected:
        print(f"error: the server rejected {summary.rejected} demo events", file=sys.stderr)
        return 1
    return 0
