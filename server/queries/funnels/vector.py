"""A person's funnel as whole-array operations (no fold): the common cases' cheap walk.

`arrayFold` runs its lambda once per array position over every row still that long, so a person
with thousands of events costs thousands of evaluations of the whole state machine. The walks
here compute the same result as the fold (docs/funnels-semantics.md) with a fixed number of
`arrayMap`/`arrayFill` passes per step, each one pass over all rows at once, in a statement a
fraction of the fold's size (planning the fold's lambdas alone took 0.15-0.3 CPU s per statement).

Ordered and strict (no exclusions, no optional steps, no step attribution). The walk takes the
fold's items: the events in time order, except that at an instant whose events carry different
step codes each event becomes one single-step item per step it matches, in step order ("multi").
Write slot s's content as the attempt's step times (entry first) and the events it used.
Processing item i's code s reads slot s-1 as it was before item i (codes apply from the last, so
this item's own code s-1 comes after), and writes slot s when:
  (a) slot s-1 holds an attempt, t_i - entry <= window, and a multi item's event is not one the
      attempt used already ("candidate"), and
  (b) slot s does not hold that attempt already.
Every write copies the entry slot s-1 holds, and by induction the entries written to any slot
never decrease over time (slot 0's entry is the item's own time). So (b) fails exactly when an
earlier candidate with the same entry wrote, i.e. when the last candidate before i (with no strict
reset in between, see below) has the same entry: (b) needs no knowledge of the writes, and each
step's writes follow from the previous step's slot contents by forward fills:
  cand_s = code s AND slot_{s-1} set AND t - entry <= window AND NOT (multi AND event used)
  write_s = cand_s AND entry != entry of the last candidate before
  slot_s before i = the last write's attempt before i (an arrayFill, shifted by one).
Strict: after each item but a multi one, the slots whose code the item lacks are emptied; so such
an item resets both fills of step s to "none" (a slot emptied then written again by the same
attempt is a new write, as in the fold). The best attempt is the first write to the furthest
slot: the fold replaces it only by a write to a further slot. The fold's input is thinned (the
middle of three alike dropped, sql.py `_thinned`), this walk's is not: the middle is alone at its
instant, so the items are the same but for it, and dropping it changes no result.

Unordered (with or without exclusions, entries restricted to a period or a value): an attempt
starts at every step event and covers the steps with an event up to the window's end after it
(docs/funnels-semantics.md). This forward reading gives the same count and times as "after each
event, the steps with an event in the window ending there" did before (the best of those windows
starts at its earliest event, whose forward window holds the same steps and first events, and no
earlier entry covers as many), and it gives each attempt a first event: its entrance period.
"""

from __future__ import annotations


def _shift(array: str, blank: str) -> str:
    """`array` one position later: element i is element i-1 ("before item i"), `blank` first."""
    return f"arrayPopBack(arrayPushFront({array}, {blank}))"


def _fill(values: str, marks: str) -> str:
    """Element i: the value of the last marked element at or before i (the first stays as it is)."""
    return f"arrayFill((v, m) -> m, {values}, {marks})"


def ordered(n: int, items: str, window: str, strict: bool) -> tuple[list[list[str]], str, str]:
    """(layers of aliased columns, furthest slot, the best attempt's step times) of the ordered or
    strict walk over `items`, the person's (t, codes, multi, id) in the fold's order: codes a
    bitmask (bit k + 1: step k), multi 1 for an event's single-step item at an instant of mixed
    step codes, id the event's position. Slot s's attempt is kept as flat arrays, one per step it
    completed: `fv_T{s}_{k}` its step-k time and `fv_I{s}_{k}` the event that completed it (0:
    none), as they were before each item (flat arrays fill far cheaper than arrays of arrays).
    Each layer is one SELECT over the one before (a step's columns refer to the previous step's
    by name: inlined aliases would grow the query tree exponentially with the steps). Aliases are
    `fv_*`."""
    layers = [
        [
            f"arrayMap(e -> e.1, {items}) AS fv_t",
            f"arrayMap(e -> e.2, {items}) AS fv_c",
            f"arrayMap(e -> e.3, {items}) AS fv_x",
            f"arrayMap(e -> e.4, {items}) AS fv_i",
        ]
    ]

    def before(value: str, s: int, marks: str, blank: str) -> str:
        """The value written at the last write of step s before each item (`blank`: none)."""
        written = _fill(f"arrayMap((w, v) -> if(w, v, {blank}), fv_w{s}, {value})", marks)
        return _shift(written, blank)

    for s in range(1, n + 1):
        cols = [f"arrayMap(c -> bitTest(c, {s}), fv_c) AS fv_h{s}"]
        if s == 1:
            cols.append("fv_t AS fv_e1")  # slot 0: an attempt entering at the item's own instant
            cols.append("fv_h1 AS fv_k1")
        else:
            cols.append(f"fv_T{s - 1}_0 AS fv_e{s}")
            ids = ", ".join(f"fv_I{s - 1}_{k}" for k in range(s - 1))
            used = " OR ".join(f"u{k} = i" for k in range(s - 1))
            args = ", ".join(f"u{k}" for k in range(s - 1))
            # A single-step item does not complete a step with an event its attempt already used.
            cols.append(
                f"arrayMap((h, e, t, x, i, {args}) -> h AND e != 0 AND t - e <= {window} AND NOT (x AND ({used})), "
                f"fv_h{s}, fv_e{s}, fv_t, fv_x, fv_i, {ids}) AS fv_k{s}"
            )
        # Strict: an item lacking code s empties slot s, unless it is a single-step item.
        reset = f"arrayMap((k, h, x) -> k OR NOT (h OR x), fv_k{s}, fv_h{s}, fv_x)" if strict else f"fv_k{s}"
        last = _fill(f"arrayMap((k, e) -> if(k, e, toInt64(0)), fv_k{s}, fv_e{s})", reset)
        cols.append(f"{_shift(last, 'toInt64(0)')} AS fv_l{s}")
        cols.append(f"arrayMap((k, e, l) -> k AND e != l, fv_k{s}, fv_e{s}, fv_l{s}) AS fv_w{s}")
        layers.append(cols)
        if s < n:
            marks = f"arrayMap((w, h, x) -> w OR NOT (h OR x), fv_w{s}, fv_h{s}, fv_x)" if strict else f"fv_w{s}"
            cols = []
            for k in range(s):
                time = "fv_t" if k == s - 1 else f"fv_T{s - 1}_{k}"
                event = "fv_i" if k == s - 1 else f"fv_I{s - 1}_{k}"
                cols.append(f"{before(time, s, marks, 'toInt64(0)')} AS fv_T{s}_{k}")
                cols.append(f"{before(event, s, marks, 'toUInt32(0)')} AS fv_I{s}_{k}")
            layers.append(cols)

    def first_write(s: int) -> str:
        """The step times of the first attempt written to slot s."""
        times = [f"arrayFirst((v, w) -> w, fv_T{s - 1}_{k}, fv_w{s})" for k in range(s - 1)]
        return f"[{', '.join([*times, f'arrayFirst((v, w) -> w, fv_t, fv_w{s})'])}]"

    furthest = "multiIf(" + ", ".join(f"has(fv_w{s}, 1), {s}" for s in range(n, 0, -1)) + ", 0)"
    times = "multiIf(" + ", ".join(f"has(fv_w{s}, 1), {first_write(s)}" for s in range(n, 0, -1)) + ", emptyArrayInt64())"
    layers.append([f"{furthest} AS fv_m", f"{times} AS fv_times"])
    return layers, "fv_m", "fv_times"


def unordered(
    n: int, evs: str, window: str, masks: bool, entry: str | None = None
) -> tuple[list[list[str]], str, str, str, str]:
    """(layers of aliased columns, as `ordered`'s, steps covered, gaps between the best's sorted first
    step times, whether the actor has a best attempt, those sorted times) of the unordered walk over `evs`, (t, codes,
    ...) in time order, codes a bitmask (bit k + 1: step k) when `masks`, else a list (negative:
    an exclusion). `entry`: a condition on an event `e` for it to start an attempt (None: any
    step event). Aliases are `fu_*`.

    An attempt starts at each step event (its entry) and covers the steps with an event from the
    entry's instant to entry + window: per step, the first such event is found with a reverse fill
    (the next step-k event at or after each position) read at the first position of the entry's
    instant. An attempt is excluded when an exclusion event falls strictly after its entry and
    strictly before its end (its last step when it covers every step, else entry + window): the
    next exclusion after the entry's instant, found the same way. The best is the first entry with
    the highest count that is not excluded (none: the actor is out)."""
    if masks:
        # Every event matches a step; the first one it matches (its lowest bit) is the one it
        # counts for: the number of zeros below that bit.
        first = "arrayMap(e -> toUInt8(bitCount(bitAnd(bitNot(e.2), e.2 - 1))), fu_items)"
    else:
        first = (
            "arrayMap(e -> toUInt8(if(arrayExists(cc -> cc > 0, e.2), "
            "arrayMin(arrayFilter(cc -> cc > 0, e.2)), 0)), fu_items)"
        )
    allowed = f"arrayMap(e -> {entry}, fu_items)" if entry is not None else None
    base = ["arrayMap(e -> e.1, fu_items) AS fu_t", f"{first} AS fu_k"]
    if not masks:
        base.append("arrayMap(e -> arrayExists(cc -> cc < 0, e.2), fu_items) AS fu_x")
    layers = [[f"{evs} AS fu_items"], base]
    previous = "arrayPopBack(arrayPushFront(fu_t, toInt64(-1)))"
    following = "arrayPopFront(arrayPushBack(fu_t, toInt64(-1)))"
    ok = "arrayMap(k -> k > 0, fu_k)" if allowed is None else f"arrayMap((k, a) -> k > 0 AND a, fu_k, {allowed})"
    layers.append(
        [
            f"arrayMap((a, b) -> a != b, fu_t, {previous}) AS fu_gs",  # an instant's first position
            f"arrayMap((a, b) -> a != b, fu_t, {following}) AS fu_ge",  # an instant's last position
            f"{ok} AS fu_ok",
        ]
    )
    cols: list[str] = []
    for k in range(1, n + 1):
        following_k = (
            f"arrayReverseFill((v, m) -> m, arrayMap((s, t) -> if(s = {k}, t, toInt64(0)), fu_k, fu_t), "
            f"arrayMap(s -> s = {k}, fu_k))"
        )
        cols.append(f"{_fill(following_k, 'fu_gs')} AS fu_n{k}")
    layers.append(cols)
    layers.append([f"arrayMap((f, t) -> f != 0 AND f - t <= {window}, fu_n{k}, fu_t) AS fu_v{k}" for k in range(1, n + 1)])
    args = ", ".join(f"c{k}" for k in range(1, n + 1))
    total = " + ".join(f"c{k}" for k in range(1, n + 1))
    covers = ", ".join(f"fu_v{k}" for k in range(1, n + 1))
    cols = [f"arrayMap((ok, {args}) -> if(ok, toUInt8({total}), toUInt8(0)), fu_ok, {covers}) AS fu_count"]
    cols.append("if(empty(fu_count), toUInt8(0), arrayMax(fu_count)) AS fu_most")
    if masks:
        cols.append("arrayFirstIndex((c, ok) -> ok AND c = fu_most, fu_count, fu_ok) AS fu_at")
    else:
        firsts = ", ".join(f"f{k}" for k in range(1, n + 1))
        nexts = ", ".join(f"fu_n{k}" for k in range(1, n + 1))
        end = f"arrayMap((t, c, {firsts}) -> if(c = {n}, greatest({firsts}), t + {window}), fu_t, fu_count, {nexts})"
        times = "arrayMap((x, t) -> if(x, t, toInt64(0)), fu_x, fu_t)"
        after = f"arrayPopFront(arrayPushBack(arrayReverseFill((v, m) -> m, {times}, fu_x), toInt64(0)))"
        # The first exclusion after each position's instant: read at the instant's last position.
        cols.append(f"arrayReverseFill((v, m) -> m, {after}, fu_ge) AS fu_nx")
        cols.append(f"{end} AS fu_end")
        layers.append(cols)
        cols = ["arrayMap((x, e) -> x != 0 AND x < e, fu_nx, fu_end) AS fu_bad"]
        cols.append("arrayFirstIndex((c, ok, b) -> ok AND c = fu_most AND NOT b, fu_count, fu_ok, fu_bad) AS fu_at")
    layers.append(cols)
    at = ", ".join(f"if(fu_v{k}[fu_at], fu_n{k}[fu_at], toInt64(0))" for k in range(1, n + 1))
    layers.append(
        [
            f"arraySort(arrayFilter(x -> x != 0, [{at}])) AS fu_firsts",
            "arrayMap((a, b) -> b - a, arrayPopBack(fu_firsts), arrayPopFront(fu_firsts)) AS fu_gaps",
        ]
    )
    return layers, "fu_most", "fu_gaps", "fu_at > 0", "fu_firsts"
