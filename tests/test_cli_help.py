"""`calbridge -h` everywhere: every command and group answers `-h` like `--help`, labels no flag
`<bool>`, and names the CALBRIDGE_* settings it reads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from app.cli import cli

# The settings each command's help must name (the top level names the essential ones).
SETTINGS_NAMED = {
    (): ["CALBRIDGE_DATABASE_URL", "CALBRIDGE_SECRET_KEY", "CALBRIDGE_PUBLIC_URL"],
    ("serve",): ["CALBRIDGE_DATABASE_URL", "CALBRIDGE_SECRET_KEY", "CALBRIDGE_ADMIN_TOKEN"],
    ("worker",): ["CALBRIDGE_DATABASE_URL", "CALBRIDGE_SECRET_KEY", "CALBRIDGE_WORKER__"],
    ("migrate",): ["CALBRIDGE_DATABASE_URL"],
    ("sandbox",): ["CALBRIDGE_GRAPH_URL", "CALBRIDGE_AUTHORITY_HOST", "CALBRIDGE_CA_BUNDLE"],
    ("demo",): [],
    ("token",): ["CALBRIDGE_DATABASE_URL"],
    ("token", "create"): ["CALBRIDGE_DATABASE_URL"],
    ("token", "list"): ["CALBRIDGE_DATABASE_URL"],
    ("token", "revoke"): ["CALBRIDGE_DATABASE_URL"],
    ("webhook",): [],
    ("webhook", "send"): ["CALBRIDGE_DATABASE_URL", "CALBRIDGE_SECRET_KEY"],
}


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*path, name))
    return paths


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.output


def test_the_table_covers_every_command() -> None:
    assert sorted(_command_paths(typer.main.get_command(cli))) == sorted(SETTINGS_NAMED)


@pytest.mark.parametrize("path", sorted(SETTINGS_NAMED), ids=lambda p: " ".join(p) or "calbridge")
def test_dash_h_is_help_without_bool_labels_naming_the_settings(path: tuple[str, ...]) -> None:
    short = _help(*path, "-h")
    assert short.startswith("Usage: ")
    assert short == _help(*path, "--help")
    assert "<bool>" not in short
    assert "-h, --help" in short
    for name in SETTINGS_NAMED[path]:
        assert name in short, (name, short)


def test_the_top_level_help_points_to_the_full_table() -> None:
    assert "docs/operations.md" in _help("-h")


def test_a_usage_error_is_plain_text() -> None:
    result = CliRunner().invoke(cli, ["serve", "--no-such-option"])
    assert result.exit_code == 2
    assert "No such option: --no-such-option" in result.output
    assert "╭" not in result.output and "-h' for help" in result.output


def test_the_installed_command_answers_dash_h() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "webhook", "send", "-h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ") and "ORGANIZATION_ID" in result.stdout
    assert "<bool>" not in result.stdout and result.stderr == ""
