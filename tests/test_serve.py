"""`--serve`: the app in a browser. Headless Chromium (Debian's, installed by .ci/run) driven by
Playwright opens the page, waits for the tree, presses keys and reads what the page received."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbrowse.tui.cli import main
from modelbrowse.tui.serving import session_command
from tests.test_cli import ROOT

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
        url = f"http://localhost:{port}"
        assert first.startswith(f"modelbrowse: serving alexnet at {url} · "), first
        yield process, url
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
