"""The `calbridge` command: serve, worker, migrate, token, webhook, sandbox, demo."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli_setup import checked_settings, command_group, fail, first_line, migrate_schema
from app.cli_tokens import token_cli
from app.cli_webhook import webhook_cli
from app.config import Settings

cli = command_group(
    name="calbridge",
    help="Keeps bookingtime and Microsoft 365 (Outlook) calendars in step.",
    epilog=(
        "Settings come from CALBRIDGE_* environment variables or a .env file in the working "
        "directory; the ones to know first: CALBRIDGE_DATABASE_URL, CALBRIDGE_SECRET_KEY, "
        "CALBRIDGE_PUBLIC_URL, CALBRIDGE_ADMIN_TOKEN, and CALBRIDGE_GRAPH_URL, "
        "CALBRIDGE_AUTHORITY_HOST, CALBRIDGE_CA_BUNDLE for the sandbox. Each command's -h says "
        "which it reads; docs/operations.md lists them all."
    ),
)
cli.add_typer(token_cli, name="token")
cli.add_typer(webhook_cli, name="webhook")

log = logging.getLogger("calbridge")


def _configure_logging(settings: Settings) -> None:
    # Only with settings already checked: a bad log level must be one line, not a traceback.
    from app.logs import configure_logging

    configure_logging(settings)


def _tune_gc() -> None:
    # Almost everything alive at start-up (modules, metadata, compiled statements) lives as long
    # as the process: freezing it keeps full collections from rescanning it on every pass, pauses
    # that otherwise show in the webhook intake's tail latency.
    gc.collect()
    gc.freeze()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the schema is touched: a busy port is one line."""
    sock: socket.socket | None = None
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is another process using it? pick another with --port or --host)"
        ) from None
    return sock


def uvicorn_proxy_options(settings: Settings) -> dict[str, Any]:
    """X-Forwarded-For is believed only from CALBRIDGE_TRUSTED_PROXIES; without any, not at all
    (uvicorn would otherwise trust it from loopback, where a local proxy is not a given)."""
    proxies = settings.trusted_proxy_list
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only; run `calbridge worker` elsewhere")
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="log every HTTP request (uvicorn's access log)")
    ] = False,
) -> None:
    """Run the API (and, unless --no-worker, the job worker) after migrating the schema.

    Reads every CALBRIDGE_* setting; first of all CALBRIDGE_DATABASE_URL, CALBRIDGE_SECRET_KEY,
    CALBRIDGE_PUBLIC_URL and CALBRIDGE_ADMIN_TOKEN.
    """
    import uvicorn

    from app.main import create_app

    settings = checked_settings()
    _configure_logging(settings)
    sock = _listen(host, port)
    revision = migrate_schema(settings)
    log.info("schema at %s; serving on http://%s:%d", revision, host, port)
    app = create_app(settings, run_worker=not no_worker)
    _tune_gc()
    # log_config=None: uvicorn's lines go through calbridge's handler (JSON or text, redacted).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        **uvicorn_proxy_options(settings),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(code=3)  # uvicorn's own code for a failed start-up


@cli.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve this process's Prometheus metrics on this port (/metrics)"),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="address the metrics port listens on")
    ] = "127.0.0.1",
) -> None:
    """Run a job worker until SIGTERM or SIGINT (in-flight jobs finish or are released).

    Reads CALBRIDGE_DATABASE_URL and CALBRIDGE_SECRET_KEY (the values `serve` has),
    CALBRIDGE_PUBLIC_URL, CALBRIDGE_GRAPH_URL, CALBRIDGE_AUTHORITY_HOST, CALBRIDGE_CA_BUNDLE and
    the CALBRIDGE_WORKER__*, CALBRIDGE_OUTLOOK__* and CALBRIDGE_RETENTION__* knobs.
    """
    # From the first instant a SIGTERM is a clean stop, never the default kill: remembered here
    # until the event loop takes the signals over.
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: early.append(received))
    settings = checked_settings()
    _configure_logging(settings)
    if metrics_port is not None:
        from app.counters import serve_worker_metrics

        try:
            serve_worker_metrics(metrics_host, metrics_port)
        except OSError as exc:
            raise fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}") from exc
        log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    _tune_gc()
    _run_fast(_run_worker(settings, stopped_before_start=early))


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run` on uvloop where it is installed (uvicorn's standard extra brings it, and
    `serve` runs on it): its event loop costs the worker a fraction of asyncio's own per task
    switch and socket event."""
    try:
        import uvloop
    except ImportError:  # not built for every platform
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _run_worker(settings: Settings, *, stopped_before_start: list[int]) -> None:
    from app.credentials.clients import GraphClients
    from app.crypto import load_secret_box
    from app.db import Database
    from app.migrate import current_revision, head_revision
    from app.queue.worker import Worker
    from app.tasks import build_registry

    stop_requested = asyncio.Event()
    job_worker: Worker | None = None

    def request_stop() -> None:
        stop_requested.set()
        if job_worker is not None:
            job_worker.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    if stopped_before_start:
        stop_requested.set()
    log.info("worker starting")

    database = Database(settings.database_url)
    graph = GraphClients(settings)
    try:
        try:
            async with database.engine.connect() as connection:
                revision = await current_revision(connection)
        except Exception as exc:
            raise fail(
                f"cannot reach the database ({type(exc).__name__}: {first_line(exc)}); "
                "check CALBRIDGE_DATABASE_URL and that the database is reachable"
            ) from None
        if revision != head_revision():
            raise fail(
                f"database schema is at {revision or 'nothing'}, this code needs "
                f"{head_revision()}: run `calbridge migrate` first"
            )
        registry = build_registry(settings, graph=graph, secret_box=load_secret_box(settings))
        job_worker = Worker(database, settings, registry)
        if stop_requested.is_set():
            job_worker.stop()
        log.info("worker started")
        await job_worker.run()
        log.info("worker stopped")
    finally:
        await graph.aclose()
        await database.dispose()


@cli.command()
def migrate() -> None:
    """Bring the database schema to the newest version, then exit.

    Reads CALBRIDGE_DATABASE_URL.
    """
    settings = checked_settings(needs_key=False)
    _configure_logging(settings)
    revision = migrate_schema(settings)
    typer.echo(f"schema at {revision}")


@cli.command()
def sandbox(
    host: Annotated[str, typer.Option(help="loopback address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port")] = 8443,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where the CA is kept (reused across runs); default a temp dir"),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="listen on a non-loopback --host (its control API is unauthenticated)",
        ),
    ] = False,
) -> None:
    """Run the Graph + Entra sandbox over HTTPS with a ready tenant, app and two mailboxes.

    Reads no setting; prints the CALBRIDGE_GRAPH_URL, CALBRIDGE_AUTHORITY_HOST and
    CALBRIDGE_CA_BUNDLE that point calbridge at it.
    """
    from app.sandbox import SandboxServer, is_loopback

    if not is_loopback(host):
        if not allow_remote:
            raise fail(
                f"--host {host} is not a loopback address: the sandbox's control API is "
                "unauthenticated, so anyone who reaches it can read and change its mailboxes; "
                "use 127.0.0.1, or add --allow-remote on a network you trust"
            )
        typer.secho(
            f"calbridge: warning: the sandbox listens on {host}; its control API is "
            "unauthenticated: anyone who reaches it can read and change its mailboxes",
            err=True,
            fg=typer.colors.YELLOW,
        )
    # Absolute, so the printed CALBRIDGE_CA_BUNDLE works from any directory.
    state_dir = state_dir.absolute() if state_dir is not None else None
    server = SandboxServer(host=host, port=port, state_dir=state_dir, allow_remote=allow_remote)

    def on_signal(signum: int, frame: object) -> None:
        # Only a flag: raising here could land anywhere (between printing and serving, or in
        # the middle of the clean-up) and end the process with 130 instead of a clean stop.
        server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start_blocking()
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise fail(f"cannot start the sandbox on {host}:{port}: {reason}") from None
    demo = server.control.seed_demo()
    lines = [
        f"calbridge sandbox running at {server.url}",
        f"CA certificate: {server.ca_path}",
        "",
        "export these to point calbridge at it:",
        f"  export CALBRIDGE_GRAPH_URL={server.graph_url}",
        f"  export CALBRIDGE_AUTHORITY_HOST={server.authority_host}",
        f"  export CALBRIDGE_CA_BUNDLE={server.ca_path}",
        f"  export CALBRIDGE_BOOKINGTIME__API_URL={server.bookingtime_api_url}",
        f"  export CALBRIDGE_BOOKINGTIME__AUTH_URL={server.bookingtime_auth_url}",
        "",
        f"tenant id:     {demo.tenant_id}  (domain {demo.domain})",
        f"client id:     {demo.client_id}",
        f"client secret: {demo.client_secret}",
        f"mailboxes:     {', '.join(demo.mailboxes)}",
        "",
        *demo.bookingtime.lines(server.url),
        "",
        "Ctrl-C stops it; the state is in memory only.",
    ]
    typer.echo("\n".join(lines))
    sys.stdout.flush()
    server.serve_forever()


@cli.command()
def demo() -> None:
    """Show the whole flow in seconds: sandbox, connection, employees, webhooks, calendars.

    Needs no setting: its database, key and sandbox live in a temporary directory.
    """
    from app.demo import main as run_demo

    # The mistyped mailbox is expected to fail: the sync history printed says so, not a log line.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    raise typer.Exit(code=run_demo(sys.stdout))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
