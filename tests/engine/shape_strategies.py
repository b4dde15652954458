"""Hypothesis strategies for shaped breakdowns (histogram, URL normalising), on top of the
trends, funnel and retention examples: URLs with trailing '/', '?', '#' and numbers to bucket."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.oracle import Event

URL_KEY = "$current_url"
# The same page written several ways, so normalising merges values; "" and "?" last (rare).
SHAPED_URLS = ("https://x.com/a/", "https://x.com/a", "https://x.com/a?#", "/", "/b//", "/b", "?", "")
# Numbers on likely bucket edges (with 0..10 and 2 or 4 bins), then a non-number last.
SHAPED_NUMBERS = st.one_of(
    st.integers(0, 10),
    st.sampled_from([2.5, 7.5, 5.0, 0.25, -1.5, 100.0]),
    st.sampled_from(["3", "x", True]),
)


@st.composite
def with_shape_values(draw: st.DrawFn, events: list[Event], number_key: str = "amount") -> list[Event]:
    """`events` with a URL and a number (mostly) on each event (the same objects, changed)."""
    for e in events:
        if draw(st.integers(0, 5)) != 5:
            e.properties[URL_KEY] = draw(st.sampled_from(SHAPED_URLS))
        if draw(st.integers(0, 5)) != 5:
            e.properties[number_key] = draw(SHAPED_NUMBERS)
    return events


@st.composite
def shaped_filter(draw: st.DrawFn, multi: bool = True, number_key: str = "amount") -> dict[str, Any]:
    """A breakdownFilter whose breakdown is a histogram or a normalised URL (or both in a list)."""
    kind = draw(st.sampled_from(["histogram", "url", "multi"] if multi else ["histogram", "url"]))
    bins = draw(st.integers(1, 5))
    if kind == "histogram":
        return {"breakdown": number_key, "breakdown_type": "event", "breakdown_histogram_bin_count": bins}
    if kind == "url":
        return {"breakdown": URL_KEY, "breakdown_type": "event", "breakdown_normalize_url": True}
    return {
        "breakdowns": [
            {"property": URL_KEY, "type": "event", "normalize_url": draw(st.booleans())},
            {"property": number_key, "type": "event", "histogram_bin_count": bins},
        ]
    }
