"""What the per-size query benchmarks share: one subprocess per size, a merged copy of the store,
interleaved timed rounds, and the verdict lines."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.serverproc import Prepared, cpu_seconds
from server.domain import accounts
from server.queries.base import QueryContext
from storage.db import Database
from storage.events import EventStore

ROOT = Path(__file__).resolve().parent.parent


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def spread(samples: dict[str, list[float]]) -> float:
    """The widest (max - min) / median over a query's timed paths: how noisy its medians are."""
    return max((max(v) - min(v)) / statistics.median(v) for v in samples.values() if v)


def paired_ratio(samples: dict[str, list[float]], top: str, bottom: str) -> float:
    """The median over rounds of `top / bottom` timed in the same round. Both paths of a round run
    seconds apart, so a load that comes and goes (another process, a merge, the page cache) slows
    both or neither; the ratio of two medians, taken from different rounds, swings with it."""
    return median([t / b for t, b in zip(samples[top], samples[bottom], strict=True)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def sizes(text: str) -> list[int]:
    """`--sizes` of a benchmark: event counts, space separated, underscores and commas allowed."""
    parsed = [int(part.replace("_", "").replace(",", "")) for part in text.split() if part]
    if not parsed or any(s < 1_000 for s in parsed):
        raise argparse.ArgumentTypeError("sizes are event counts >= 1000, e.g. '1000000 10000000'")
    return parsed


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM to the process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_worker(script: str, size: int, argv: list[str], timeout: float, *, pass_dir: bool = False) -> dict[str, Any]:
    """Runs `script --worker SIZE --out FILE *argv` in its own process group and temp dir (TMPDIR
    points inside it, so whatever the worker prepares lands there); the dir is removed afterwards,
    whatever happens. `pass_dir`: the worker also gets `--dir` (the temp dir itself)."""
    name = Path(script).stem
    tmp = Path(tempfile.mkdtemp(prefix=f"insights-bench-{name}-{size}-"))
    out = tmp / "result.json"
    command = [sys.executable, script, "--worker", str(size), "--out", str(out), *argv]
    if pass_dir:
        command += ["--dir", str(tmp)]
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        code = proc.wait(timeout)
        if code != 0:
            raise RuntimeError(f"the {size:,}-event run exited with {code}")
        loaded: dict[str, Any] = json.loads(out.read_text())
        return loaded
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the {size:,}-event run took more than {timeout:g}s") from None
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def optimize_main(path: str) -> int:
    """`--optimize PATH`: merges the events table of the chDB store at PATH (own process: one chDB
    path per process)."""
    store = EventStore(f"chdb://{path}")
    try:
        store.query("OPTIMIZE TABLE events FINAL")
    finally:
        store.close()
    return 0


def merged_copy(script: str, ready: Prepared, result: dict[str, Any]) -> EventStore:
    """Merges the prepared store (in a process of its own), copies it, and opens the copy here: the
    served process holds one store, this process the other, on the same merged data. Puts
    `prepare_s` and `disk_bytes` in `result`."""
    began = time.perf_counter()
    subprocess.run([sys.executable, script, "--optimize", str(ready.tmp / "events")], cwd=ROOT, check=True)
    # symlinks=True: the store links its databases and tables to `store/` by relative links.
    shutil.copytree(ready.tmp / "events", ready.tmp / "direct", symlinks=True)
    result["prepare_s"] = time.perf_counter() - began
    store = EventStore(f"chdb://{ready.tmp / 'direct'}")
    disk = store.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'events' AND active")
    result["disk_bytes"] = int(disk[0][0] or 0)
    print(
        f"[{result['size']:,}] merged and copied in {result['prepare_s']:.1f}s ({result['disk_bytes'] / 1e6:.0f} MB)",
        flush=True,
    )
    return store


def context(store: EventStore, ready: Prepared) -> QueryContext:
    """The query context of the prepared environment, as the served process builds it."""
    db = Database(ready.env["INSIGHTS_DATABASE_URL"])
    try:
        env = accounts.verify_api_key(db, ready.key).environments[ready.environment_id]
    finally:
        db.close()
    return QueryContext(
        team_id=env.id,
        timezone=env.timezone,
        week_start_day=env.week_start_day,
        now=dt.datetime.now(dt.UTC),
        earliest=lambda: store.earliest_timestamp(env.id),
        materialized=store.materialized,
    )


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of n paths in which each path runs right after each other path equally often (a
    Williams design: n orders for even n, 2n for odd). Rotating one order does not do that: a
    rotation keeps every path's cyclic predecessor, so one path would nearly always follow the same
    heavy baseline (it did: e2e followed the reference shape in 3 rounds of 4)."""
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    orders = [[(i + shift) % n for i in first] for shift in range(n)]
    return orders if n % 2 == 0 else orders + [order[::-1] for order in orders]


def timed_rounds(paths: dict[str, Callable[[], object]], repeats: int, server_pid: int) -> dict[str, Any]:
    """`repeats` interleaved rounds of every path: median wall and CPU seconds (`<path>_s`,
    `<path>_cpu_s`) and the wall samples. The CPU of "e2e" is the served process's (it runs the
    engine there), every other path's this process's. Round k runs the paths in the k-th of
    `balanced_orders`, so that no path mostly follows the same one (a heavy baseline leaves cold
    caches and freed memory to whatever runs next)."""
    timings: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    keys = list(paths)
    orders = balanced_orders(len(keys))
    for round_no in range(repeats):
        for key in (keys[i] for i in orders[round_no % len(orders)]):
            run = paths[key]
            cpu_began = cpu_seconds(server_pid) if key == "e2e" else time.process_time()
            began = time.perf_counter()
            run()
            timings[key].append(time.perf_counter() - began)
            cpu[key].append((cpu_seconds(server_pid) if key == "e2e" else time.process_time()) - cpu_began)
    measured: dict[str, Any] = {f"{k}_s": median(v) for k, v in timings.items()}
    measured.update({f"{k}_cpu_s": median(v) for k, v in cpu.items()})
    measured["samples"] = timings
    return measured


def worker_main(measure: Callable[[int, argparse.Namespace], dict[str, Any]], args: argparse.Namespace) -> int:
    """The `--worker SIZE` side: measures one size and writes the result to `--out`."""
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM unwinds, so that the served process is stopped and the temp dir removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = measure(args.worker, args)
    except KeyboardInterrupt:
        return 130
    Path(args.out).write_text(json.dumps(result))
    return 0


def run_sizes(
    script: str, sizes: list[int], argv: list[str], timeout: float, *, pass_dir: bool = False
) -> list[dict[str, Any]] | int:
    """The parent side: every size in its own worker, smallest first. An exit status instead of
    results when interrupted, or when the first size already failed (a later failure keeps the
    sizes measured so far)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results: list[dict[str, Any]] = []
    try:
        for size in sizes:
            results.append(run_worker(script, size, argv, timeout, pass_dir=pass_dir))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        if not results:
            return 1
    return results


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every per-size query benchmark takes (its own can be added)."""
    parsed = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument(
        "--sizes", type=sizes, default=[1_000_000, 10_000_000], help="demo event counts ('1000000 10000000')"
    )
    parsed.add_argument("--repeats", type=int, default=5, help="measured rounds per query after a warm-up (5)")
    parsed.add_argument("--call-timeout", type=float, default=600.0, help="deadline of each RPC in seconds")
    parsed.add_argument("--timeout", type=float, default=3600.0, help="seconds one size may take in all")
    parsed.add_argument("--show-sql", action="store_true", help="print the SQL run, with its values")
    parsed.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parsed.add_argument("--out", help=argparse.SUPPRESS)
    parsed.add_argument("--optimize", help=argparse.SUPPRESS)
    return parsed


def main(
    script: str,
    description: str | None,
    measure: Callable[[int, argparse.Namespace], dict[str, Any]],
    report: Callable[[list[dict[str, Any]]], int],
) -> int:
    """The whole command line of a served per-size query benchmark (funnels.py, journeys.py): the
    parent runs a worker per size and reports; a worker measures its size; `--optimize` merges."""
    args = parser(description).parse_args()
    if args.optimize:
        return optimize_main(args.optimize)
    if args.repeats < 1:
        raise SystemExit("--repeats must be positive")
    if args.worker is not None:
        return worker_main(measure, args)
    print(
        f"{Path(script).stem} on demo data, sizes {', '.join(f'{s:,}' for s in args.sizes)}; {args.repeats} "
        f"rounds after a warm-up, medians; one process per size; {os.cpu_count()} CPUs",
        flush=True,
    )
    argv = ["--repeats", str(args.repeats), "--call-timeout", str(args.call_timeout)]
    argv += ["--show-sql"] if args.show_sql else []
    results = run_sizes(script, args.sizes, argv, args.timeout)
    return results if isinstance(results, int) else report(results)
