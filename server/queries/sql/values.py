"""Engine values as protobuf JSON values, one per cell, as results.proto documents for HogQLResult."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

# Integers a JSON number holds exactly; larger ones travel as their decimal text.
_EXACT = 2**53


def _set(target: struct_pb2.Value, value: Any) -> None:
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if abs(value) <= _EXACT:
            target.number_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, (float, decimal.Decimal)):
        number = float(value)
        if math.isfinite(number):
            target.number_value = number
        else:
            target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        target.string_value = aware.isoformat()
    elif isinstance(value, dt.date):
        target.string_value = value.isoformat()
    elif isinstance(value, (str, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        target.string_value = str(value)
    elif isinstance(value, bytes):
        target.string_value = value.decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        struct = target.struct_value
        struct.Clear()
        for key, item in value.items():
            _set(struct.fields[str(key)], item)
    elif isinstance(value, Sequence):
        items = target.list_value
        items.Clear()
        for item in value:
            _set(items.values.add(), item)
    else:
        target.string_value = str(value)


def row_value(row: Sequence[Any]) -> struct_pb2.ListValue:
    """One result row as a ListValue of typed cells."""
    out = struct_pb2.ListValue()
    for cell in row:
        _set(out.values.add(), cell)
    return out
