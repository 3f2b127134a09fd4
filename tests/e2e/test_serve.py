"""`--serve`: the app in a browser. Headless Chromium (Debian's, installed by .ci/run) driven by
Playwright opens the page, waits for the tree, presses keys and reads what the page received."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import WSServerHandshakeError

from modelbrowse.tui.cli import main
from modelbrowse.tui.serving import session_command
from tests.e2e.test_cli import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling out of this closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ESCAPES = re.compile(r"\x1b\[[0-9;?$<>=]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[=>]")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_session_command_drops_the_server_options() -> None:
    command = session_command(["alexnet", "--serve", "--port", "9000", "--kw", "num_classes=3"])
    assert command.endswith("-m modelbrowse.tui alexnet --kw num_classes=3 --served")
    assert command.startswith(sys.executable)
    assert "--port" not in session_command(["x y.pt", "--port=9000", "--serve"])
    assert "'x y.pt'" in session_command(["x y.pt", "--serve"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alexnet", "--port", "9000"], "--port goes with --serve"),
        (["alexnet", "--serve", "--print"], "--serve runs the app; leave out --print"),
    ],
)
def test_serve_option_mistakes(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["alexnet", "--serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"modelbrowse: error: cannot serve on localhost:{port} (")
    assert err.count("\n") == 1 and "choose another port with --port N" in err
    assert main(["alexnet", "--serve", "--port", "70000"]) == 2
    assert "a port is a number from 1 to 65535" in capsys.readouterr().err


def test_a_bad_source_is_said_before_serving(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alexnett", "--serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelbrowse: error: ") and "alexnet" in err and err.count("\n") == 1


def test_without_textual_serve_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # import fails
    assert main(["alexnet", "--serve", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == (
        "modelbrowse: error: --serve needs textual-serve: pip install 'modelbrowse[serve]'\n"
    )


# --- the token, Host and Origin: as Jupyter checks them ------------------------------------------


class FakeAppService:
    """Stands for the app's process: records the sizes it is asked for."""

    sizes: ClassVar[list[tuple[int, int]]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    async def start(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def set_terminal_size(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def stop(self) -> None:
        pass


def guarded_requests(
    monkeypatch: pytest.MonkeyPatch, check: Callable[[Any, int, str], Awaitable[None]]
) -> None:
    """Run `check(client, port, token)` against the server `--serve` makes, in this process."""
    from aiohttp.test_utils import TestClient, TestServer

    from modelbrowse.tui.serving import make_server

    monkeypatch.setattr("textual_serve.server.AppService", FakeAppService)
    FakeAppService.sizes = []
    port = free_port()
    server = make_server(["alexnet", "--serve"], port, "alexnet")
    assert server.url == f"http://localhost:{port}/?token={server.token}"
    assert len(server.token) >= 40

    async def run() -> None:
        app = await server._make_app()
        async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
            await check(client, port, server.token)

    asyncio.run(asyncio.wait_for(run(), timeout=60))


def test_the_page_needs_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    async def check(client: Any, port: int, token: str) -> None:
        for path in ("/", "/?token=", f"/?token={token[:-1]}", "/static/js/textual.js", "/ws"):
            response = await client.get(path)
            assert response.status == 403, path
            assert "open the URL with its token" in await response.text()
        response = await client.get(f"/?token={token}")
        assert response.status == 200
        assert "modelbrowse alexnet" in await response.text()
        cookie = response.cookies[f"modelbrowse-token-{port}"]
        assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
        # The page's own requests (scripts, the websocket) carry the cookie instead.
        assert (await client.get("/static/js/textual.js")).status == 200
        client.session.cookie_jar.clear()
        assert (await client.get("/static/js/textual.js")).status == 403

    guarded_requests(monkeypatch, check)


def test_host_and_origin_must_be_this_server(monkeypatch: pytest.MonkeyPatch) -> None:
    async def check(client: Any, port: int, token: str) -> None:
        page = f"/?token={token}"
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            response = await client.get(page, headers={"Host": host, "Origin": f"http://{host}"})
            assert response.status == 200, host
        # DNS rebinding: a name that resolves here, but is not this server's address.
        for host in (f"evil.example:{port}", "localhost", f"localhost:{port + 1}"):
            response = await client.get(page, headers={"Host": host})
            assert response.status == 403, host
            assert "answers only at its local address" in await response.text()
        for origin in ("http://evil.example", f"http://localhost:{port + 1}", "null"):
            response = await client.get(page, headers={"Origin": origin})
            assert response.status == 403, origin
            assert "requests from other sites are refused" in await response.text()
            websocket = await client.get(f"/ws?token={token}", headers={"Origin": origin})
            assert websocket.status == 403
        assert FakeAppService.sizes == []  # no session was started

    guarded_requests(monkeypatch, check)


def test_the_terminal_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    async def check(client: Any, port: int, token: str) -> None:
        async with client.ws_connect(f"/ws?token={token}&width=20000&height=20000") as socket:
            await socket.send_json(["resize", {"width": 10**9, "height": "x"}])
            await socket.send_json(["resize", {"width": 120, "height": 40}])
            await socket.send_json(["ping", "done"])
            assert await socket.receive_json() == ["pong", "done"]
        assert FakeAppService.sizes == [(500, 200), (500, 24), (120, 40)]
        with pytest.raises(WSServerHandshakeError):
            await client.ws_connect(f"/ws?token={token}x")

    guarded_requests(monkeypatch, check)


# --- in a browser --------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelbrowse.tui", "alexnet", "--serve", "--port", str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the server checks the source first (imports torch)
        found = re.match(
            rf"modelbrowse: serving alexnet at (http://localhost:{port}/\?token=[\w-]{{43}}) · ",
            first,
        )
        assert found, first
        yield process, found.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def browser_or_skip() -> object:
    """Playwright's sync API, or a skip where the browser is missing (never in CI)."""
    required = os.environ.get("MODELBROWSE_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return sync_playwright


def test_the_app_in_a_browser(server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    sync_playwright = browser_or_skip()
    process, url = server
    received: list[str] = []

    def screen() -> str:
        """What the page's terminal was sent, without escape sequences, spaces folded."""
        return re.sub(r"\s+", " ", ESCAPES.sub(" ", "".join(received)))

    with sync_playwright() as playwright:  # type: ignore[operator]
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def on_socket(socket: object) -> None:
                socket.on(  # type: ignore[attr-defined]
                    "framereceived",
                    lambda frame: received.append(
                        frame.decode("utf-8", "replace") if isinstance(frame, bytes) else ""
                    ),
                )

            page.on("websocket", on_socket)
            refused = page.goto(url.partition("?")[0], timeout=60_000)
            assert refused is not None and refused.status == 403  # no token, no page
            page.goto(url, timeout=60_000)

            def wait_for(needle: str, timeout: float = 90) -> None:
                deadline = time.monotonic() + timeout
                while needle not in screen():
                    if time.monotonic() > deadline:
                        page.screenshot(path=str(tmp_path / "page.png"))
                        raise AssertionError(
                            f"{needle!r} never reached the page: {screen()[-800:]}"
                        )
                    page.wait_for_timeout(200)

            wait_for("AlexNet 61.1M")  # the tree's root, with its total
            wait_for("output (1, 1000)")  # the shape check ran: the model is real
            page.focus(".xterm-helper-textarea")  # where xterm.js takes the keyboard
            page.keyboard.press("j")
            page.keyboard.press("j")
            wait_for("output_size=(6, 6)")  # the detail pane of avgpool, two lines down
            page.keyboard.press("f")  # an edit key, from the browser
            wait_for("avgpool has no parameters")
            page.screenshot(path=str(tmp_path / "page.png"))
            page.close()
        finally:
            browser.close()

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
