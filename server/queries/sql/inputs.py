"""What a SQL insight's placeholders are filled from: the node's filters, values and variables, and the
environment facts `{filters}` needs (time zone, now, test-account filters)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import struct_pb2

from generated.insights.v1 import query_pb2
from server import utc


@dataclass(frozen=True)
class Inputs:
    """The placeholder sources of one HogQLQuery (field paths in errors are relative to it)."""

    filters: query_pb2.HogQLFilters | None = None
    values: Mapping[str, struct_pb2.Value] = field(default_factory=dict)
    variables: Mapping[str, query_pb2.HogQLVariable] = field(default_factory=dict)
    timezone: str = "UTC"
    now: dt.datetime = field(default_factory=utc.now)
    test_account_filters: Sequence[query_pb2.PropertyFilter] = ()


def inputs_of(
    node: query_pb2.HogQLQuery,
    *,
    timezone: str,
    now: dt.datetime,
    test_account_filters: Sequence[query_pb2.PropertyFilter] = (),
) -> Inputs:
    """The inputs a HogQLQuery carries, in the environment's time zone at `now`."""
    return Inputs(
        filters=node.filters if node.HasField("filters") else None,
        values=dict(node.values),
        variables=dict(node.variables),
        timezone=timezone,
        now=now,
        test_account_filters=tuple(test_account_filters),
    )
