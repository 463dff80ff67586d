"""Runs the sandbox over HTTPS on loopback with a throwaway trustme CA.

uvicorn runs in a background thread with its own event loop, so the sandbox keeps serving while
the caller blocks (MSAL in a worker thread, a synchronous bench) or awaits (async tests)."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

import trustme
import uvicorn

from app.sandbox.app import create_app
from app.sandbox.bookingtime.envelope import API_PATH, TOKEN_PATH
from app.sandbox.control import Control
from app.sandbox.faults import Faults
from app.sandbox.runtime import Runtime
from app.sandbox.state import SandboxState
from app.sandbox.throttle import Throttle, ThrottleLimits

CA_FILE = "sandbox-ca.pem"
CA_KEY_FILE = "sandbox-ca-key.pem"
STARTUP_TIMEOUT = 15.0


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def load_or_create_ca(state_dir: Path) -> trustme.CA:
    """Reuse the CA in `state_dir`, so a CALBRIDGE_CA_BUNDLE exported once stays valid."""
    cert, key = state_dir / CA_FILE, state_dir / CA_KEY_FILE
    if cert.exists() and key.exists():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = trustme.CA(organization_name="calbridge sandbox")
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return ca


class SandboxServer:
    """One running sandbox. Use `async with SandboxServer.start() as sandbox:` in async code, or
    `with SandboxServer() as sandbox:` in blocking code."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        seed: int | None = None,
        limits: ThrottleLimits | None = None,
        allow_remote: bool = False,
    ) -> None:
        # The control API has no authentication: off loopback, only when asked for explicitly.
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"{host} is not a loopback address (pass allow_remote=True)")
        self.host = host
        self._requested_port = port
        self._own_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="calbridge-sandbox-"))
        self.runtime = Runtime(SandboxState(), Faults(seed), Throttle(limits))
        self.control = Control(self.runtime)
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._failure: BaseException | None = None

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        seed: int | None = None,
        limits: ThrottleLimits | None = None,
    ) -> AsyncIterator[SandboxServer]:
        server = cls(host=host, port=port, state_dir=state_dir, seed=seed, limits=limits)
        await asyncio.to_thread(server.start_blocking)
        try:
            yield server
        finally:
            await asyncio.to_thread(server.stop)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def bookingtime_auth_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    @property
    def bookingtime_api_url(self) -> str:
        """The App API base; requests go to `{this}{locale}/organization/…`."""
        return f"{self.url}{API_PATH}/"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / CA_FILE

    def start_blocking(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # a failed start leaves no temp dir behind
            raise

    def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = load_or_create_ca(self.state_dir)
        names = ["127.0.0.1", "localhost", "::1"]
        if self.host not in names and not _is_wildcard(self.host):
            names.append(self.host)  # a remote client checks the name it connected to
        leaf = ca.issue_cert(*names)
        cert_path, key_path = (
            self.state_dir / "sandbox-cert.pem",
            self.state_dir / "sandbox-key.pem",
        )
        leaf.cert_chain_pems[0].write_to_path(str(cert_path))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(cert_path), append=True)
        leaf.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.runtime),
            ssl_certfile=str(cert_path),
            ssl_keyfile=str(key_path),
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        server = self._server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:
                self._failure = exc
            finally:
                sock.close()
                server.ready.set()

        self._thread = threading.Thread(target=run, name="calbridge-sandbox", daemon=True)
        self._thread.start()
        if not server.ready.wait(STARTUP_TIMEOUT) or self._failure or not server.started:
            raise RuntimeError(f"the sandbox did not start: {self._failure!r}")

    def stop(self) -> None:
        self.runtime.faults.clear()  # releases held requests so shutdown is quick
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def request_stop(self) -> None:
        """Ask `serve_forever` to return (safe from a signal handler: it only sets a flag)."""
        self._stop_requested.set()

    def serve_forever(self) -> None:
        """For the CLI: block until the server thread ends or `request_stop` (Ctrl-C stops it
        too), then stop cleanly."""
        assert self._thread is not None
        try:
            while self._thread.is_alive() and not self._stop_requested.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        self.start_blocking()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
