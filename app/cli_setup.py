"""What every `calbridge` command does before its work: the settings checked, the schema
migrated, and any failure said in one line on stderr with exit code 2."""

from __future__ import annotations

from typing import Any

import typer

from app.config import ConfigError, Settings, load_settings
from app.crypto import SecretKeyError, check_secret_key


def command_group(**options: Any) -> typer.Typer:
    """A `calbridge` command group: `-h` as well as `--help`, and plain help text."""
    return typer.Typer(
        # Up to 100 columns where the terminal has them: the command lists show whole sentences.
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
        # Plain (click's) help: Rich's tables label every flag `<bool>`, `--help` included, and
        # draw a usage error as a box instead of one line.
        rich_markup_mode=None,
        no_args_is_help=True,
        add_completion=False,
        **options,
    )


def fail(message: str) -> typer.Exit:
    """The exit to raise after saying `message` (the caller raises it, so control flow shows)."""
    # One line, whatever the message: an operator greps for it, a supervisor logs it whole.
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    typer.secho(f"calbridge: {line}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def checked_settings(*, needs_key: bool = True) -> Settings:
    """Every setting checked before anything is touched (no migration, no logging, no file)."""
    try:
        settings = load_settings()
        check_secret_key(settings, required=needs_key)
    except (ConfigError, SecretKeyError) as exc:
        raise fail(str(exc)) from None
    return settings


def first_line(exc: BaseException) -> str:
    # SQLAlchemy appends a "Background on this error" line: the first says what went wrong.
    return (str(exc).strip().splitlines() or [""])[0]


def migrate_schema(settings: Settings) -> str | None:
    """Upgrade the database to the newest schema; the revision it is at."""
    from app.migrate import head_revision, upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise fail(
            f"cannot migrate the database ({type(exc).__name__}: {first_line(exc)}); "
            "check CALBRIDGE_DATABASE_URL and that the database is reachable"
        ) from None
    return head_revision()
