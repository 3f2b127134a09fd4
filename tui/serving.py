"""`--serve`: the same app in a browser, through textual-serve, on localhost only.

Each page the browser opens runs its own `modelbrowse` process with the same arguments; the
server itself imports neither torch nor the app. As Jupyter does, the server makes a random
token and prints it in the URL to open; every request (the page, the websocket, downloads)
without it is refused, as is one whose `Host` or `Origin` is not this server's local address
(another site in the browser, DNS rebinding). The terminal size a page asks for is capped.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelbrowse.core.errors import UsageError

HOST = "localhost"
DEFAULT_PORT = 8000
HINT = "--serve needs textual-serve: pip install 'modelbrowse[serve]'"
# Options of the serving process that the app's own process must not see again.
SERVER_ONLY = {"--serve": 0, "--port": 1}
# The largest terminal a page may ask for: every cell costs the session memory.
MAX_WIDTH = 500
MAX_HEIGHT = 200
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def session_command(argv: Sequence[str]) -> str:
    """The shell command each browser session runs: this Python, the same arguments, minus the
    server's own, plus `--served` (the app's input and output are pipes, not a terminal)."""
    kept: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in SERVER_ONLY:
            skip = SERVER_ONLY[name] if "=" not in arg else 0
            continue
        kept.append(arg)
    return shlex.join([sys.executable, "-m", "modelbrowse.tui", *kept, "--served"])


def check_port(port: int) -> None:
    """A one-line error now, rather than a traceback from the web server later."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is a number from 1 to 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UsageError(
                f"cannot serve on {HOST}:{port} ({reason}): choose another port with --port N"
            ) from exc


def capped_size(width: object, height: object) -> tuple[int, int]:
    """The terminal size a page asked for, as whole cells within 1..MAX."""

    def cap(value: object, default: int, most: int) -> int:
        try:
            number: int = int(value)  # type: ignore[call-overload]  # any object: int() decides
        except (TypeError, ValueError, OverflowError):
            return default
        return max(1, min(number, most))

    return cap(width, 80, MAX_WIDTH), cap(height, 24, MAX_HEIGHT)


def cookie_name(port: int) -> str:
    # Cookies are shared by every port of a host: the name keeps servers apart.
    return f"modelbrowse-token-{port}"


def make_server(argv: Sequence[str], port: int, title: str) -> Any:
    """textual-serve's server for this session, guarded by a token of its own (`.url` has it)."""
    try:
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError as exc:
        raise UsageError(HINT) from exc
    token = secrets.token_urlsafe(32)
    hosts = {f"{name}:{port}" for name in LOCAL_NAMES}
    origins = {f"http://{host}" for host in hosts}
    url = f"http://{HOST}:{port}/?token={token}"

    def refuse(why: str) -> web.HTTPForbidden:
        return web.HTTPForbidden(text=f"modelbrowse: {why}\n")

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Host", "").lower() not in hosts:
            raise refuse("this server answers only at its local address")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in origins:
            raise refuse("requests from other sites are refused")
        given = request.query.get("token") or request.cookies.get(cookie_name(port)) or ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise refuse("open the URL with its token, as the server printed it")
        if request.path == "/ws":
            width, height = capped_size(
                request.query.get("width", "80"), request.query.get("height", "24")
            )
            query = {**request.query, "width": str(width), "height": str(height)}
            request = request.clone(rel_url=request.rel_url.with_query(query))
        response = await handler(request)
        if "token" in request.query and request.path == "/":
            # The websocket, the static files and downloads carry the cookie, not the URL.
            response.set_cookie(
                cookie_name(port), token, httponly=True, samesite="Strict", path="/"
            )
        return response

    class GuardedServer(Server):  # type: ignore[misc]
        """textual-serve's server behind the token, `Host` and `Origin` checks, with one
        line of its own instead of a logo, and without a log line for every request."""

        token: str
        url: str

        def initialize_logging(self) -> None:
            logging.basicConfig(level=logging.WARNING, format="modelbrowse: %(message)s")

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        async def _process_messages(self, websocket: Any, app_service: Any) -> None:
            resize = app_service.set_terminal_size

            async def capped(width: object, height: object) -> None:
                await resize(*capped_size(width, height))

            app_service.set_terminal_size = capped
            await super()._process_messages(websocket, app_service)

        async def on_startup(self, app: object) -> None:
            self.console.print(
                f"modelbrowse: serving {title} at {url} · each page is its own session · "
                "ctrl+c stops",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    server = GuardedServer(
        session_command(argv), host=HOST, port=port, title=f"modelbrowse {title}"
    )
    server.token = token
    server.url = url
    return server


def serve(argv: Sequence[str], port: int, title: str) -> int:
    """Serve until ctrl+c; returns the exit status. The caller checks the port first
    (`check_port`); one taken since is still one line."""
    server = make_server(argv, port, title)
    try:
        server.serve()
    except OSError as exc:
        raise UsageError(f"cannot serve on {HOST}:{port}: {exc.strerror or exc}") from exc
    return 0
