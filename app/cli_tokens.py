"""`calbridge token create|list|revoke`: the admin API tokens, from the command line."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from app.cli_setup import checked_settings, command_group, fail, migrate_schema
from app.config import Settings

token_cli = command_group(
    help="Admin API tokens, stored hashed in the database of CALBRIDGE_DATABASE_URL."
)


class Role(StrEnum):
    read = "read"
    admin = "admin"


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who or what uses the token")],
    role: Annotated[Role, typer.Option(help="read: status only; admin: everything")] = Role.admin,
) -> None:
    """Create an admin API token and print it (it is shown this once).

    Reads CALBRIDGE_DATABASE_URL (and brings its schema up to date first).
    """
    settings = checked_settings(needs_key=False)
    migrate_schema(settings)
    token = asyncio.run(_create_token(settings, name, role.value))
    typer.echo(token)


async def _create_token(settings: Settings, name: str, role: str) -> str:
    from app.admin.auth import create_token
    from app.db import Database

    database = Database(settings.database_url)
    try:
        async with database.session_scope() as session:
            return await create_token(session, name=name, role=role)
    finally:
        await database.dispose()


@token_cli.command("list")
def token_list(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """List admin API tokens: id, name, role, created, last used (never the token itself).

    Reads CALBRIDGE_DATABASE_URL (and brings its schema up to date first).
    """
    settings = checked_settings(needs_key=False)
    migrate_schema(settings)
    rows = asyncio.run(_list_tokens(settings, include_revoked=all_))
    typer.echo(f"{'ID':>4}  {'NAME':<24} {'ROLE':<6} {'CREATED':<20} {'LAST USED':<20} REVOKED")
    for token_id, name, role, created, last_used, revoked in rows:
        typer.echo(
            f"{token_id:>4}  {name:<24} {role:<6} {created:<20} {last_used or '-':<20} "
            f"{revoked or '-'}"
        )


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _list_tokens(
    settings: Settings, *, include_revoked: bool
) -> list[tuple[int, str, str, str, str | None, str | None]]:
    from app.admin.auth import list_tokens
    from app.db import Database

    database = Database(settings.database_url)
    try:
        async with database.session_scope() as session:
            rows = await list_tokens(session, include_revoked=include_revoked)
            return [
                (
                    row.id,
                    row.name,
                    row.role,
                    _stamp(row.created_at) or "-",
                    _stamp(row.last_used_at),
                    _stamp(row.revoked_at),
                )
                for row in rows
            ]
    finally:
        await database.dispose()


@token_cli.command("revoke")
def token_revoke(
    name_or_id: Annotated[str, typer.Argument(metavar="NAME|ID", help="token name or id")],
) -> None:
    """Revoke admin API tokens by name (every live token of that name) or id; effective at once.

    Reads CALBRIDGE_DATABASE_URL (and brings its schema up to date first).
    """
    settings = checked_settings(needs_key=False)
    migrate_schema(settings)
    revoked = asyncio.run(_revoke_token(settings, name_or_id))
    if not revoked:
        raise fail(f"no live token named or numbered {name_or_id!r}")
    for token_id, name in revoked:
        typer.echo(f"revoked token {token_id} ({name})")


async def _revoke_token(settings: Settings, name_or_id: str) -> list[tuple[int, str]]:
    from app.admin.auth import RevokedTokenNotFoundError, revoke_token
    from app.db import Database

    database = Database(settings.database_url)
    try:
        async with database.session_scope() as session:
            try:
                rows = await revoke_token(session, name_or_id=name_or_id)
            except RevokedTokenNotFoundError:
                return []
            return [(row.id, row.name) for row in rows]
    finally:
        await database.dispose()
