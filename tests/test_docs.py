"""docs/usage.md against the click commands: every option of every command is in its
section, none is documented that the command does not have (as sqlite-utils' docs test)."""

import re
from pathlib import Path

import click
import pytest

from flowersort.cli.app import cli

ROOT = Path(__file__).resolve().parents[1]
USAGE = ROOT / "docs" / "usage.md"
HEADING = re.compile(r"^#{2,3} `(flowersort(?: [a-z]+)*)(?: [A-Z\[][^`]*)?`$")
# "- `--move-to DIR`: ...", "- `-q, --quiet`, `--log-file PATH`: ...",
# "- `--augment` / `--no-augment`: ..."
OPTION_ITEM = re.compile(r"^- ((?:`[^`]+`(?:, | / )?)+)(?: \(required\))?:")
OPTION_NAME = re.compile(r"(?<![\w-])--?[a-z][a-z0-9-]*")


def commands(group: click.Command = cli, name: str = "flowersort"):
    """(full name, command) of the group and of every command under it, depth first."""
    yield name, group
    for sub_name, sub in getattr(group, "commands", {}).items():
        yield from commands(sub, f"{name} {sub_name}")


def documented(text: str) -> dict[str, set[str]]:
    """The options each command's section of usage.md lists, by the command's full name."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## ") or line.startswith("### "):
            match = HEADING.match(line)
            current = match.group(1) if match else None
            if current is not None:
                sections[current] = set()
        elif current is not None and (item := OPTION_ITEM.match(line)):
            sections[current].update(OPTION_NAME.findall(item.group(1)))
    return sections


def option_names(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return names - {"--help"}


def test_every_command_has_a_section():
    assert sorted(documented(USAGE.read_text())) == sorted(name for name, _ in commands())


@pytest.mark.parametrize("name,command", list(commands()), ids=[n for n, _ in commands()])
def test_usage_documents_exactly_the_options(name, command):
    sections = documented(USAGE.read_text())
    assert name in sections, f"no section for {name} in docs/usage.md"
    have = option_names(command)
    assert sorted(have - sections[name]) == [], f"{name}: not documented"
    assert sorted(sections[name] - have) == [], f"{name}: documented, but no such option"


@pytest.mark.parametrize("name,command", list(commands()), ids=[n for n, _ in commands()])
def test_usage_gives_each_command_the_exit_codes_of_its_help(name, command):
    """The section's "Exit codes: `0`, `2`, ..." line says what the --help epilog says."""
    helped = re.findall(r"(?:: |, )(\d+(?:/\d+)?) ", command.epilog)
    assert helped[0] == "0", command.epilog
    text = re.split(rf"\n##+ `{name}[ `]", USAGE.read_text(), maxsplit=1)[1]
    section = re.split(r"\n##+ ", text, maxsplit=1)[0]
    line = next(line for line in section.splitlines() if line.startswith("Exit codes: "))
    assert re.findall(r"`(\d+)`(?:/`(\d+)`)?", line) == [
        (code.split("/")[0], code.split("/")[1] if "/" in code else "") for code in helped
    ]


def test_usage_names_every_action_and_exit_code():
    from flowersort.base.errors import EXIT_MEANING
    from flowersort.base.outcomes import Action

    text = USAGE.read_text()
    assert [a.value for a in Action if f"`{a.value}`" not in text] == []
    table = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    for code in EXIT_MEANING:
        assert all(f"| `{c}`" in table or f", `{c}` |" in table for c in code.split("/")), code


def test_the_documented_option_finder_finds_what_it_should():
    """The parser itself: a bullet of several spellings, a required one, a plain list item."""
    text = (
        "## `flowersort classify SRC`\n"
        "- `-q, --quiet`, `--log-file PATH`: x\n"
        "- `--augment` / `--no-augment`: y\n"
        "- `--move-to DIR` (required): z\n"
        "- `moved`, `copied`: an action, not an option\n"
        "- a sentence with `--not-an-option` in it\n"
    )
    assert documented(text) == {
        "flowersort classify": {
            "-q",
            "--quiet",
            "--log-file",
            "--augment",
            "--no-augment",
            "--move-to",
        }
    }


@pytest.mark.parametrize("doc", ["README.md", "docs/design.md"])
def test_the_other_docs_name_only_options_that_exist(doc):
    """The README's and design.md's prose and examples may name an option only if some
    command has it: a renamed or removed option cannot linger there."""
    every = set().union(*(option_names(command) for _, command in commands())) | {"--help"}
    every |= {"--clear", "--write"}  # other programs': python3 -m venv, reference_scores.py
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", (ROOT / doc).read_text()))
    assert sorted(named - every) == []
