"""`--serve`: the same app in a browser, through textual-serve, on localhost only.

Each page the browser opens runs its own `modelbrowse` process with the same arguments; the
server itself imports neither torch nor the app.
"""

from __future__ import annotations

import logging
import shlex
import socket
import sys
from collections.abc import Sequence

from modelbrowse.core.errors import UsageError

HOST = "localhost"
DEFAULT_PORT = 8000
HINT = "--serve needs textual-serve: pip install 'modelbrowse[serve]'"
# Options of the serving process that the app's own process must not see again.
SERVER_ONLY = {"--serve": 0, "--port": 1}


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


def serve(argv: Sequence[str], port: int, title: str) -> int:
    """Serve until ctrl+c; returns the exit status. The caller checks the port first
    (`check_port`); one taken since is still one line."""
    try:
        from textual_serve.server import Server
    except ImportError as exc:
        raise UsageError(HINT) from exc
    url = f"http://{HOST}:{port}"

    class QuietServer(Server):  # type: ignore[misc]
        """textual-serve's server with one line of its own instead of a logo, and without a
        log line for every request."""

        def initialize_logging(self) -> None:
            logging.basicConfig(level=logging.WARNING, format="modelbrowse: %(message)s")

        async def on_startup(self, app: object) -> None:
            self.console.print(
                f"modelbrowse: serving {title} at {url} · each page is its own session · "
                "ctrl+c stops",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    server = QuietServer(session_command(argv), host=HOST, port=port, title=f"modelbrowse {title}")
    try:
        server.serve()
    except OSError as exc:
        raise UsageError(f"cannot serve on {HOST}:{port}: {exc.strerror or exc}") from exc
    return 0
