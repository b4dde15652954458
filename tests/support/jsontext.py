"""The text ClickHouse's JSON parser gives for a JSON value: the property text of the contract."""

from __future__ import annotations

import json
import math
from typing import Any


def number_text(value: int | float) -> str:
    """Canonical number text: integers in decimal, integral floats below 1e21 as integers, other floats
    in shortest round-trip form with a bare exponent (1.5e-7, 2.5e300), -0.0 as "-0"."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def value_text(value: Any) -> str | None:
    """Property text of a decoded JSON value: None for null and '', strings as is, the rest canonical."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return number_text(value)
    return _minified(value)


def _minified(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_minified(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_minified(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return number_text(value)
    return json.dumps(value, ensure_ascii=False)
