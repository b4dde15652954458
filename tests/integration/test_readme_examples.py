"""README.md's shell examples, run as a reader runs them: in README order, in one shell, against a
demo server set up as `make run` sets it up, with the key and environment it prints pasted in.

Every ```sh block is a test case. A block that cannot run here by nature (TLS certificates, `make
run` itself, another test run) carries `<!-- not-run: reason -->` right above it and is reported
as skipped with that reason; any other block must run, every command exiting 0 and every method
answered on the terminal printing JSON."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import defaultdict

import pytest

from tests.support.demoserver import ROOT, demo_server
from tests.support.readme_examples import Block, Outcome, json_values, readme_blocks, run_in_one_shell

README = ROOT / "README.md"
BLOCKS = readme_blocks(README)
# Small enough to load in seconds, large enough that every demo insight has data.
DEMO_EVENTS = 20_000

# Files the examples read that a reader brings along (events.jsonl's persons are beta.csv's).
INPUTS = {
    "events.jsonl": "\n".join(
        json.dumps(
            {
                "event": "$pageview",
                "distinct_id": f"beta-{n}",
                "timestamp": f"2026-01-0{n}T10:00:00Z",
                "uuid": f"00000000-0000-4000-8000-00000000000{n}",
                "properties": {"$current_url": "https://hedgebox.example/pricing", "$browser": "Firefox"},
            }
        )
        for n in (1, 2)
    )
    + "\n",
    "beta.csv": "distinct_id\nbeta-1\nbeta-2\n",
    "my-query.json": json.dumps(
        {
            "kind": "TrendsQuery",
            "series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}],
            "interval": "week",
            "dateRange": {"date_from": "-30d"},
        }
    ),
    "proto.json": json.dumps(
        {"trends_query": {"series": [{"events_node": {"event": "$pageview"}}], "interval": "INTERVAL_TYPE_WEEK"}}
    ),
}


def _paste(text: str, key: str, environment_id: int, port: int) -> tuple[str, set[str]]:
    """The command as a reader runs it against this demo: the printed key and environment id in place
    of the README's placeholders, the demo's port in place of the default one; and which were used."""
    used = set()
    for name, pattern, value in (
        ("key", r"^KEY=phx_\.\.\.$", f"KEY={key}"),
        ("environment", r"^ENV=1$", f"ENV={environment_id}"),
        ("address", r"127\.0\.0\.1:50051", f"127.0.0.1:{port}"),
    ):
        text, count = re.subn(pattern, value, text)
        if count:
            used.add(name)
    return text, used


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Outcome]]:
    """Every command of every block without a not-run marker, run once, by block line."""
    if shutil.which("jq") is None:
        # The examples pipe grpcurl's JSON through jq (.ci/run installs it).
        message = "jq is not installed (Debian: apt-get install jq); the README examples use it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("readme")
    (tmp / "demo").mkdir()
    work = tmp / "work"
    work.mkdir()
    # The examples name `.venv/bin/...` relative to the checkout; their files go to a scratch dir.
    (work / ".venv").symlink_to(ROOT / ".venv")
    for name, content in INPUTS.items():
        (work / name).write_text(content, encoding="utf-8")
    with demo_server(tmp / "demo", DEMO_EVENTS) as demo:
        planned = []
        pasted: set[str] = set()
        for block in BLOCKS:
            if block.not_run is None:
                for command in block.commands:
                    text, used = _paste(command.text, demo.key, demo.environment_id, demo.port)
                    planned.append((command, text))
                    pasted |= used
        assert pasted == {"key", "environment", "address"}, (
            f"the README no longer sets KEY=phx_..., ENV=1 or uses 127.0.0.1:50051 as this test expects: {pasted}"
        )
        env = {**demo.env, "PYTHONPATH": str(ROOT)}
        ran = run_in_one_shell(planned, work, env, timeout=600)
    by_block: dict[int, list[Outcome]] = defaultdict(list)
    lines = {command.line: block.line for block in BLOCKS for command in block.commands}
    for outcome in ran:
        by_block[lines[outcome.command.line]].append(outcome)
    return by_block


def _failure(outcome: Outcome) -> str | None:
    """Why a command's outcome is not what a reader should see, or None."""
    if outcome.returncode != 0:
        return "it did not exit 0"
    if outcome.command.assigns and outcome.value in ("", "null"):
        return f"${outcome.command.assigns} is {outcome.value!r} afterwards"
    if outcome.command.answers_json:
        try:
            values = json_values(outcome.stdout)
        except json.JSONDecodeError as exc:
            return f"its answer is not JSON ({exc})"
        if not values or not all(isinstance(value, dict) for value in values):
            return "its answer is not one or more JSON objects"
    elif outcome.command.calls_grpcurl and outcome.command.prints and not outcome.stdout.strip():
        return "it printed nothing"
    return None


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{block.line}" for block in BLOCKS])
def test_readme_example_runs(block: Block, request: pytest.FixtureRequest) -> None:
    if block.not_run is not None:
        pytest.skip(f"README.md:{block.line} is marked not-run: {block.not_run}")
    ran: dict[int, list[Outcome]] = request.getfixturevalue("outcomes")
    results = ran[block.line]
    assert [outcome.command for outcome in results] == block.commands
    failures = [f"{why}:\n{outcome.describe()}" for outcome in results if (why := _failure(outcome))]
    assert not failures, "\n\n".join(failures)


def test_every_not_run_marker_stands_above_a_block() -> None:
    """A marker that no longer sits right above a block (text inserted between) would leave the block
    to run unmarked and the marker to mark nothing: both are mistakes of an edit."""
    markers = len(re.findall(r"^<!--\s*not-run:", README.read_text(encoding="utf-8"), re.MULTILINE))
    assert markers == sum(block.not_run is not None for block in BLOCKS)


def test_the_examples_call_the_service() -> None:
    """Most of the README's examples are grpcurl calls that run: a not-run marker is for what cannot
    run here, not a way to quiet a failing example."""
    run = [block for block in BLOCKS if block.not_run is None and block.calls_grpcurl]
    marked = [block for block in BLOCKS if block.not_run is not None and block.calls_grpcurl]
    assert len(run) >= 10 and len(marked) <= 1, (
        f"{len(run)} grpcurl blocks run, marked not-run: {[block.line for block in marked]}"
    )


def test_inputs_are_files_the_examples_name() -> None:
    """Every file the test brings along is one an example reads (no stale inputs)."""
    text = "\n".join(block.text for block in BLOCKS if block.not_run is None)
    assert [name for name in INPUTS if name not in text] == []



def test_examples_name_what_they_created_by_its_captured_id() -> None:
    """An example that acts on something an earlier example created names it by the variable that
    captured its id: a literal id points at whatever has that id in the reader's environment
    (`make run`'s demo insights take ids 1 to 5, so "id": 1 renamed a demo insight)."""
    literal = re.compile(r'"(id|insight_id|cohort_id|dashboard_id|from_dashboard|action_id)":\s*\d')
    found = [
        f"README.md:{command.line}: {match.group(0)}"
        for block in BLOCKS
        if block.not_run is None
        for command in block.commands
        for match in literal.finditer(command.text)
    ]
    assert found == []
