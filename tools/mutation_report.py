"""Prints what `make mutation` found: mutant counts per module, then every survivor with its change.

Reads mutmut's results under mutants/ (run from the repository root, after `mutmut run`). The
modules are the `only_mutate` list of [tool.mutmut] in pyproject.toml. Survivors documented as
equivalent in docs/mutation.md are still printed (and counted): the document says why they stay.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

# mutmut's exit codes of a mutant's test run, as its own `mutmut results` names them.
STATUS = {
    0: "survived",
    1: "killed",
    3: "killed",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "mypy",  # refused by the type checker (`type_check_command`): no test needed to run
}
COLUMNS = ("killed", "mypy", "survived", "no tests", "timeout", "other", "unchecked")


def modules(pyproject: Path = Path("pyproject.toml")) -> list[str]:
    """The files `make mutation` mutates."""
    config = tomllib.loads(pyproject.read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def results(module: str) -> dict[str, int | None]:
    """Mutant name → exit code of its test run (None: not run yet) for one module."""
    meta = Path("mutants") / f"{module}.meta"
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def status(code: int | None) -> str:
    if code is None:
        return "unchecked"  # not run yet (or the run was stopped)
    return STATUS.get(code, "other")


def change(name: str, module: str) -> str:
    """The mutant's diff against the original function, as one line ("- old || + new")."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    lines = get_diff_for_mutant(name, path=module).splitlines()
    changed = [line.strip() for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return " || ".join(changed)


def main() -> int:
    if not Path("mutants").is_dir():
        print("no mutants/ here: run `make mutation` first", file=sys.stderr)
        return 1
    survivors: list[tuple[str, str]] = []
    print(f"{'module':30}" + "".join(f"{column:>10}" for column in COLUMNS) + f"{'total':>7}")
    for module in modules():
        codes = results(module)
        counts = Counter(status(code) for code in codes.values())
        print(f"{module:30}" + "".join(f"{counts[column]:>10}" for column in COLUMNS) + f"{len(codes):>7}")
        survivors += [(module, name) for name, code in sorted(codes.items()) if status(code) == "survived"]
    print(f"\n{len(survivors)} survivors (`.venv/bin/mutmut show NAME` prints one in full):")
    for module, name in survivors:
        print(f"  {name}\n      {change(name, module)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
