"""The shell examples of README.md: its ```sh blocks, their not-run markers and their commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An HTML comment right above a block (blank lines between allowed) that keeps the test from running it.
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
# A call of one RPC: the last word of a grpcurl command (`insights.v1.InsightsService/GetInsight`).
METHOD = re.compile(r"\s[A-Za-z_][\w.]*\.[A-Za-z_]\w*/[A-Za-z_]\w*\s*$")


@dataclass(frozen=True)
class Command:
    """One shell command of a block: its text (continuations and quoted newlines kept) and where it starts."""

    line: int
    text: str
    # The text with everything inside quotes and `$(...)` masked as "x": what the shell itself
    # reads as words, pipes and redirections.
    bare: str

    @property
    def calls_grpcurl(self) -> bool:
        return "grpcurl" in self.text or bool(re.search(r"(^|[\s(])\$G\s", self.text))

    @property
    def assigns(self) -> str | None:
        """The variable a plain assignment (`ID=$(...)`, `KEY=...`) sets, else None."""
        match = re.fullmatch(r"([A-Za-z_]\w*)=\S*", self.bare)
        return match.group(1) if match else None

    @property
    def prints(self) -> bool:
        """Its output goes to the terminal: not captured, piped or redirected."""
        return self.assigns is None and "|" not in self.bare and ">" not in self.bare

    @property
    def answers_json(self) -> bool:
        """A grpcurl call of a method whose answer goes to the terminal, so it must be JSON."""
        return self.calls_grpcurl and self.prints and bool(METHOD.search(self.bare))


@dataclass(frozen=True)
class Block:
    """A ```sh block of the README: the line of its opening fence, its text and its not-run reason."""

    line: int
    text: str
    not_run: str | None

    @property
    def commands(self) -> list[Command]:
        return split_commands(self.text, self.line + 1)

    @property
    def calls_grpcurl(self) -> bool:
        return any(command.calls_grpcurl for command in self.commands)


def sh_blocks(markdown: str) -> list[Block]:
    """Every ```sh block of a Markdown text, in order, with the not-run marker above it if any."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```sh":
            index += 1
            continue
        start = index
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"README line {start + 1}: ```sh block never closed")
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = NOT_RUN.match(lines[above].strip()) if above >= 0 else None
        blocks.append(Block(start + 1, "\n".join(lines[start + 1 : end]), marker.group("reason") if marker else None))
        index = end + 1
    return blocks


def readme_blocks(path: Path) -> list[Block]:
    return sh_blocks(path.read_text(encoding="utf-8"))


def split_commands(script: str, first_line: int = 1) -> list[Command]:
    """The commands of a shell script as bash splits them at newlines: a newline inside quotes, inside
    `$(...)` or after a backslash continues the command; comments and blank lines are dropped."""
    commands: list[Command] = []
    text: list[str] = []
    bare: list[str] = []
    stack = ["plain"]  # plain, paren ($(...) or (...)), single ('...'), double ("...")
    line = first_line
    start = first_line
    index = 0

    def keep(char: str, visible: bool) -> None:
        text.append(char)
        bare.append(char if visible else "x")

    while index < len(script):
        char = script[index]
        top = stack[-1]
        nxt = script[index + 1] if index + 1 < len(script) else ""
        if top == "single":
            keep(char, False)
            if char == "'":
                stack.pop()
        elif char == "\\" and top != "single":
            keep(char, top == "plain")
            if nxt:
                keep(nxt, top == "plain")
                line += nxt == "\n"
                index += 1
        elif top == "double":
            if char == '"':
                stack.pop()
                keep(char, len(stack) == 1)
            elif char == "$" and nxt == "(":
                keep(char, False)
                keep(nxt, False)
                stack.append("paren")
                index += 1
            else:
                keep(char, False)
        else:  # plain or paren
            at_word_start = not text or text[-1] in " \t\n;|&("
            if char == "#" and at_word_start:
                while index < len(script) and script[index] != "\n":
                    index += 1
                continue
            if char == "\n" and len(stack) == 1:
                if "".join(text).strip():
                    commands.append(Command(start, "".join(text).strip(), "".join(bare).strip()))
                text.clear()
                bare.clear()
                line += 1
                start = line
                index += 1
                continue
            visible = len(stack) == 1
            if char == "'":
                keep(char, visible)
                stack.append("single")
            elif char == '"':
                keep(char, visible)
                stack.append("double")
            elif char == "$" and nxt == "(":
                keep(char, visible)
                keep(nxt, False)
                stack.append("paren")
                index += 1
            elif char == "(":
                keep(char, visible)
                stack.append("paren")
            elif char == ")" and top == "paren":
                stack.pop()
                keep(char, len(stack) == 1)
            else:
                keep(char, visible)
        if char == "\n":
            line += 1
        index += 1
    if len(stack) != 1:
        raise ValueError(f"line {start}: unterminated {stack[-1]} in {''.join(text)!r}")
    if "".join(text).strip():
        commands.append(Command(start, "".join(text).strip(), "".join(bare).strip()))
    return commands


@dataclass(frozen=True)
class Outcome:
    """What one command did when run: the text as run, its exit status and its output."""

    command: Command
    ran: str
    returncode: int
    stdout: str
    stderr: str
    # For an assignment, the value the variable holds afterwards.
    value: str | None = None

    def describe(self) -> str:
        return (
            f"README line {self.command.line}: exit {self.returncode}\n$ {self.ran}\n"
            f"--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-2000:]}"
        )


def run_in_one_shell(
    commands: list[tuple[Command, str]], cwd: Path, env: dict[str, str], timeout: float
) -> list[Outcome]:
    """Runs the commands (each with the text to run) one after the other in one bash process, so that
    variables one sets are there for the next, as in a reader's terminal; each command's exit status
    and output are kept apart. A failing command does not stop the ones after it; one still running
    after `timeout` seconds is killed, and it and the ones after it have exit status -1."""
    out = cwd / ".outcomes"
    out.mkdir()
    parts = ["set -o pipefail"]
    for index, (command, text) in enumerate(commands):
        # A brace group runs in the shell itself: assignments inside it stay.
        parts.append(f"{{\n{text}\n}} >{out}/{index}.out 2>{out}/{index}.err </dev/null\necho $? >{out}/{index}.rc")
        if command.assigns:
            parts.append(f'printf %s "${command.assigns}" >{out}/{index}.value')
    script = cwd / ".readme.sh"
    script.write_text("\n".join(parts) + "\n", encoding="utf-8")
    # A session of its own: a command that hangs is killed with its children (grpcurl under bash).
    shell = subprocess.Popen(["bash", str(script)], cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        shell.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    outcomes: list[Outcome] = []
    for index, (command, text) in enumerate(commands):
        rc = out / f"{index}.rc"
        outcomes.append(
            Outcome(
                command,
                text,
                int(rc.read_text()) if rc.exists() else -1,
                (out / f"{index}.out").read_text(errors="replace") if rc.exists() else "",
                (out / f"{index}.err").read_text(errors="replace")
                if rc.exists()
                else f"(not finished when the examples' {timeout:.0f} s were up)",
                (out / f"{index}.value").read_text() if (out / f"{index}.value").exists() else None,
            )
        )
    return outcomes


def json_values(text: str) -> list[Any]:
    """The JSON values printed one after another (grpcurl prints one per message of a stream)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)
