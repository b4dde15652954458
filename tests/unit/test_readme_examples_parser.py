"""The README example parser splits commands where bash does, so each example is run and judged whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.readme_examples import json_values, run_in_one_shell, sh_blocks, split_commands

SCRIPT = r"""KEY=phx_...        # printed by `make run`
G=".venv/bin/grpcurl -plaintext"

# A comment line, then a JSON body over several lines
ID=$($G -H "authorization: Bearer $KEY" -d '{
  "name": "a # not a comment",
  "query": {"x": "it''s"}
}' 127.0.0.1:50051 insights.v1.InsightsService/CreateInsight | jq -r .id)
$G -d '{"id": '"$ID"'}' \
  127.0.0.1:50051 insights.v1.InsightsService/GetInsight   # trailing comment
$G -d '{"csv": "'"$(base64 -w0 beta.csv)"'"}' 127.0.0.1:50051 x.v1.S/Upload > out.json
echo $(echo "a ) b")
"""


def test_commands_end_where_bash_ends_them() -> None:
    commands = split_commands(SCRIPT, first_line=10)
    assert [command.line for command in commands] == [10, 11, 14, 18, 20, 21]
    assert commands[0].text == "KEY=phx_..."
    assert commands[2].text.startswith("ID=$($G") and commands[2].text.endswith("jq -r .id)")
    assert '"a # not a comment"' in commands[2].text
    assert commands[3].text.endswith("insights.v1.InsightsService/GetInsight")


def test_what_each_command_is() -> None:
    key, g, create, get, upload, echo = split_commands(SCRIPT)
    assert (key.assigns, g.assigns, create.assigns) == ("KEY", "G", "ID")
    assert get.assigns is None and get.calls_grpcurl and get.answers_json
    # Redirected, piped into an assignment, or no method: nothing printed to judge as JSON.
    assert upload.calls_grpcurl and not upload.answers_json
    assert create.calls_grpcurl and not create.answers_json
    assert not echo.calls_grpcurl and not echo.answers_json
    # Quoted and substituted text is masked: the `|` and `>` the shell sees are the only ones left.
    assert create.bare.startswith("ID=$") and "|" not in create.bare and "#" not in create.bare
    assert ">" not in get.bare and ">" in upload.bare


def test_split_agrees_with_bash_on_the_example() -> None:
    """bash -n accepts each piece on its own: no command was cut inside its quotes."""
    for command in split_commands(SCRIPT):
        checked = subprocess.run(["bash", "-n"], input=command.text, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, (command.text, checked.stderr)


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ValueError, match="unterminated single"):
        split_commands("$G -d '{\"a\": 1}\n")


def test_blocks_and_their_markers() -> None:
    markdown = "\n".join(
        [
            "Intro",
            "```sh",
            "make run",
            "```",
            "<!-- not-run: needs certificates -->",
            "",
            "```sh",
            "serve --tls",
            "```",
            "```python",
            "print(1)",
            "```",
            "<!-- not-run: a marker above prose -->",
            "text",
            "```sh",
            "echo hi",
            "```",
        ]
    )
    blocks = sh_blocks(markdown)
    assert [(block.line, block.text, block.not_run) for block in blocks] == [
        (2, "make run", None),
        (7, "serve --tls", "needs certificates"),
        (15, "echo hi", None),
    ]
    assert [command.line for command in blocks[1].commands] == [8]


def test_json_values_reads_a_stream_of_answers() -> None:
    text = json.dumps({"a": 1}, indent=2) + "\n" + json.dumps({"b": [2]}, indent=2) + "\n"
    assert json_values(text) == [{"a": 1}, {"b": [2]}]
    assert json_values("  \n") == []
    with pytest.raises(json.JSONDecodeError):
        json_values("ERROR:\n  Code: NotFound")


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_one_shell_keeps_variables_and_each_commands_outcome(tmp_path: Path) -> None:
    script = 'ID=$(echo \'{"id": "6"}\' | jq -r .id)\nfalse | cat\necho "id $ID"\nNONE=$(echo \'{}\' | jq -r .id)\n'
    commands = [(command, command.text) for command in split_commands(script)]
    outcomes = run_in_one_shell(commands, tmp_path, dict(os.environ), timeout=60)
    assert [(o.returncode, o.stdout, o.value) for o in outcomes] == [
        (0, "", "6"),
        (1, "", None),  # pipefail: grpcurl failing in front of a pipe still fails the command
        (0, "id 6\n", None),  # a failure does not stop the commands after it
        (0, "", "null"),
    ]
