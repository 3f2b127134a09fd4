"""The installed `modelbrowse` command in a real terminal (tmux), read with capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelbrowse.core.recipe import read_recipe

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

COMMAND = Path(sys.executable).parent / "modelbrowse"


class Terminal:
    """A detached tmux session (120x40 unless told) running one command."""

    def __init__(self, socket: str, session: str) -> None:
        self.socket = socket
        self.session = session

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return result.stdout

    def kill_server(self) -> None:
        """Kill the tmux server (its panes get SIGHUP) and wait until it is gone, so that a
        session started next gets a new one."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "-L", self.socket, "ls"], capture_output=True)
            if alive.returncode != 0:
                return
            time.sleep(0.05)

    def screen(self) -> str:
        return re.sub(r"[ \t]+", " ", self.tmux("capture-pane", "-p", "-t", self.session))

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def wait_for(self, needle: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if needle in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} did not appear; the screen:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    socket = f"modelbrowse-test-{uuid.uuid4().hex[:8]}"
    term = Terminal(socket, "app")
    yield term
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def start(
    terminal: Terminal,
    tmp_path: Path,
    *args: str,
    env_prefix: str = "",
    leader: bool = False,
    size: tuple[int, int] = (120, 40),
) -> Path:
    """Run the command in the terminal; returns the file its exit status is written to.

    With `leader`, the app is the terminal's own process (as in `ssh -t HOST modelbrowse` or a
    tmux window made for it), with no shell to write the status."""
    status = tmp_path / "status"
    line = " ".join([env_prefix, str(COMMAND), *args]).strip()
    script = (
        f"cd {tmp_path} && exec {line}"
        if leader
        else (f"cd {tmp_path} && {line}; echo $? > {status}; sleep 60")
    )
    # COLUMNS and LINES (set by some test runners) would override the terminal's real size.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TMUX") and k not in ("COLUMNS", "LINES")
    }
    subprocess.run(
        [
            "tmux", "-L", terminal.socket, "new-session", "-d", "-s", terminal.session,
            "-x", str(size[0]), "-y", str(size[1]), script,
        ],
        check=True,
        env={**env, "TERM": "xterm-256color"},
    )  # fmt: skip
    return status


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written")


def test_browse_alexnet_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    assert COMMAND.exists(), f"the console script is not installed at {COMMAND}"
    status = start(terminal, tmp_path, "alexnet")
    screen = terminal.wait_for("[random init]")
    assert "features Sequential 2.5M" in screen
    assert "q Quit" in screen

    terminal.keys(":")
    terminal.wait_for("go to a path")
    terminal.keys("features.0.weight", "Enter")
    screen = terminal.wait_for("statistics exact")
    for expected in ("shape (64, 3, 11, 11)", "dtype float32", "device cpu", "requires_grad True"):
        assert expected in screen

    terminal.keys("/")
    terminal.keys("linear", "Enter")
    screen = terminal.wait_for("3 matches")
    assert "features Sequential" not in screen
    terminal.keys("Escape")
    terminal.wait_for("features Sequential 2.5M")

    terminal.keys("q")
    assert wait_for_file(status) == "0"
    # The terminal is restored: the shell's screen, not the app's, is what is left.
    assert "q Quit" not in terminal.screen()


@pytest.mark.parametrize(
    ("name", "expected_status"), [("SIGTERM", "143"), ("SIGHUP", "129"), ("SIGINT", "130")]
)
def test_a_signal_restores_the_terminal_and_exits_non_zero(
    terminal: Terminal, tmp_path: Path, name: str, expected_status: str
) -> None:
    status = start(terminal, tmp_path, "alexnet")
    terminal.wait_for("[random init]")
    os.kill(app_pid(terminal), getattr(signal, name))
    assert wait_for_file(status) == expected_status
    modes = terminal.tmux(
        "display", "-p", "-t", terminal.session, "#{alternate_on} #{mouse_any_flag}"
    )
    assert modes.strip() == "0 0"  # out of the alternate screen, mouse reporting off
    screen = terminal.screen()
    assert f"modelbrowse: error: stopped by {name}" in screen
    assert "q Quit" not in screen


def app_pid(terminal: Terminal, *, leader: bool = False) -> int:
    pane = int(terminal.tmux("display", "-p", "-t", terminal.session, "#{pane_pid}"))
    if leader:
        return pane
    children = subprocess.run(["pgrep", "-P", str(pane)], capture_output=True, text=True).stdout
    return int(children.split()[0])


def running(pid: int) -> bool:
    """Alive and not a zombie (one nobody has reaped yet has left all the same)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"the app (pid {pid}) was still running {timeout:g} s after its terminal")


@pytest.mark.parametrize("leader", [True, False], ids=["app-leads", "under-a-shell"])
@pytest.mark.parametrize("moment", ["loading torch", "initialising weights", "[random init]"])
def test_the_app_leaves_when_its_terminal_dies(
    terminal: Terminal, tmp_path: Path, moment: str, leader: bool
) -> None:
    """An SSH connection dropping: the hang-up's SIGCONT (sent to the terminal's own process)
    used to restart Textual's output on the dead terminal, and the app then waited for ever."""
    start(terminal, tmp_path, "vit_b_16", leader=leader)  # 86.6M parameters: initialised at once
    terminal.wait_for(moment, timeout=30)
    pid = app_pid(terminal, leader=leader)
    terminal.kill_server()
    wait_until_gone(pid)


@pytest.mark.parametrize("how", ["terminal dies", "SIGTERM"])
def test_a_save_under_way_finishes_before_the_app_leaves(
    terminal: Terminal, tmp_path: Path, how: str
) -> None:
    leader = how == "terminal dies"
    status = start(terminal, tmp_path, "vit_l_16", "--seed", "3", leader=leader)
    terminal.wait_for("VisionTransformer 304.3M", timeout=30)
    terminal.keys("w")
    terminal.wait_for("write the weights")
    terminal.keys("Enter")  # 1.2 GB, after the weights are initialised: seconds of writing
    terminal.wait_for("writing", timeout=60)
    pid = app_pid(terminal, leader=leader)
    if leader:
        terminal.kill_server()
    else:
        os.kill(pid, signal.SIGTERM)
    wait_until_gone(pid, timeout=120)

    saved = tmp_path / "vit_l_16-edited.pt"
    state = torch.load(saved, weights_only=True, mmap=True)
    assert state["heads.head.weight"].shape == (1000, 1024)
    assert (tmp_path / "vit_l_16-edited.pt.recipe.json").is_file()
    assert not list(tmp_path.glob(".*.tmp"))
    if not leader:
        assert wait_for_file(status) == "143"
        screen = terminal.screen()
        assert screen.count("modelbrowse: error: stopped by SIGTERM") == 1
        assert screen.count("finishing the save to") == 1


def test_edits_outlive_a_dropped_connection(
    terminal: Terminal, tmp_path: Path, _state_folder: Path
) -> None:
    start(terminal, tmp_path, "alexnet", leader=True)
    terminal.wait_for("[random init]")
    terminal.keys("j")
    terminal.keys("f")
    terminal.wait_for("1 unsaved edit")
    pid = app_pid(terminal, leader=True)
    terminal.kill_server()
    wait_until_gone(pid)
    kept = list((_state_folder / "modelbrowse" / "recovered").glob("alexnet-*.recipe.json"))
    assert len(kept) == 1

    status = start(terminal, tmp_path, "alexnet")
    screen = terminal.wait_for("were kept")
    # The notification's lines, after its left edge (▌), joined.
    toast = " ".join(
        line.split("▌", 1)[1].strip(" │") for line in screen.splitlines() if "▌" in line
    )
    assert "1 unsaved edit of alexnet from a session stopped by SIGHUP" in toast
    assert read_recipe(kept[0])["kept"]["announced"] is True
    terminal.keys("q")
    assert wait_for_file(status) == "0"

    (tmp_path / "status").unlink()
    terminal.kill_server()
    status = start(terminal, tmp_path, "alexnet", "--recipe", str(kept[0]))
    screen = terminal.wait_for("1 edit from")
    assert "features Sequential 2.5M frozen" in screen
    terminal.keys("w")
    terminal.wait_for("write the weights")
    terminal.keys("Enter")
    terminal.wait_for("wrote alexnet-edited.pt")
    terminal.keys("q")
    assert wait_for_file(status) == "0"
    frozen = read_recipe(tmp_path / "alexnet-edited.pt.recipe.json")["frozen"]
    assert frozen[0] == "features.0.weight"


def test_sigint_keeps_unsaved_edits(
    terminal: Terminal, tmp_path: Path, _state_folder: Path
) -> None:
    """A real SIGINT (`kill -INT`, not the ctrl+c key) leaves as SIGTERM does: edits kept."""
    status = start(terminal, tmp_path, "alexnet")
    terminal.wait_for("[random init]")
    terminal.keys("j")
    terminal.keys("f")
    terminal.wait_for("1 unsaved edit")
    os.kill(app_pid(terminal), signal.SIGINT)
    assert wait_for_file(status) == "130"
    kept = list((_state_folder / "modelbrowse" / "recovered").glob("alexnet-*.recipe.json"))
    assert len(kept) == 1
    assert read_recipe(kept[0])["kept"]["reason"] == "stopped by SIGINT"
    assert "1 edit kept: " in " ".join(terminal.screen().split())


def test_sigterm_while_initialising_restores_the_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    status = start(terminal, tmp_path, "vit_b_16")
    terminal.wait_for("initialising weights", timeout=30)
    os.kill(app_pid(terminal), signal.SIGTERM)
    assert wait_for_file(status) == "143"
    modes = terminal.tmux("display", "-p", "-t", terminal.session, "#{alternate_on}")
    assert modes.strip() == "0"
    assert "modelbrowse: error: stopped by SIGTERM" in terminal.screen()


def test_a_plain_terminal_without_colour_stays_usable(terminal: Terminal, tmp_path: Path) -> None:
    status = start(terminal, tmp_path, "alexnet", env_prefix="env TERM=dumb NO_COLOR=1")
    screen = terminal.wait_for("[random init]")
    assert "features Sequential 2.5M" in screen
    terminal.keys("j", "l")
    screen = terminal.wait_for("0 Conv2d 23.3K")
    # The detail pane follows the cursor a frame after the tree expands.
    screen = terminal.wait_for("path features")
    assert "0 Conv2d 23.3K" in screen
    terminal.keys("q")
    assert wait_for_file(status) == "0"


def test_keys_typed_right_after_the_selector_key_go_into_its_prompt(
    terminal: Terminal, tmp_path: Path
) -> None:
    status = start(terminal, tmp_path, "alexnet")
    terminal.wait_for("[random init]")
    terminal.keys("*", "all-linear", "Enter")  # at once, as a fast typist or a paste sends them
    terminal.wait_for("all-linear: 2 modules, 54,534,144 parameters")
    terminal.keys("f")
    screen = terminal.wait_for("freeze 2 modules matching all-linear")
    assert "(6.6M trainable, 54.5M frozen)" in screen
    terminal.keys("C-c", "C-c")
    assert wait_for_file(status) == "130"


def test_unknown_model_prints_one_line_in_a_real_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    status = start(terminal, tmp_path, "alexnett")
    assert wait_for_file(status, timeout=90) == "2"
    screen = terminal.screen()
    assert "modelbrowse: error: unknown model 'alexnett' (did you mean: alexnet?)" in screen
    assert "Traceback" not in screen


def test_replace_undo_redo_and_write_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    status = start(terminal, tmp_path, "alexnet")
    terminal.wait_for("[random init]")
    terminal.keys(":", "classifier.6", "Enter")
    terminal.wait_for("out_features=1000,")
    terminal.keys("e")
    screen = terminal.wait_for("replace classifier.6")
    assert "nn.Linear(in_features=4096, out_features=1000, bias=True)" in screen
    terminal.keys("nn.Linear(4096, 10)", "Enter")  # typing replaces the selected text
    screen = terminal.wait_for("output (1, 10)")
    assert "57.0M params" in screen
    assert "1 unsaved edit" in screen
    assert "out_features=10," in screen

    terminal.keys("u")
    screen = terminal.wait_for("61.1M params")
    assert "unsaved" not in screen
    terminal.keys("C-r")
    terminal.wait_for("57.0M params")

    terminal.keys("w")
    terminal.wait_for("write the weights")
    terminal.keys("Enter")
    screen = terminal.wait_for("wrote alexnet-edited.pt")
    assert "unsaved" not in screen
    terminal.keys("q")
    assert wait_for_file(status) == "0"

    state = torch.load(tmp_path / "alexnet-edited.pt", weights_only=True)
    assert state["classifier.6.weight"].shape == (10, 4096)


def test_training_checkpoint_delete_a_key_and_write_in_a_real_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    state = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)).state_dict()
    torch.save(
        {"epoch": 7, "model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "last.ckpt"
    )
    status = start(terminal, tmp_path, "last.ckpt")
    terminal.wait_for("1 Group 18")  # the tree and the root's details may paint apart
    screen = terminal.wait_for("epoch 7")
    assert "weights from ['model']" in screen
    assert "key prefix 'module.' stripped" in screen
    terminal.keys(":", "1.bias", "Enter")
    terminal.wait_for("shape (2,)")
    terminal.keys("d")
    terminal.wait_for("delete the keys 1.bias")
    terminal.keys("w")
    screen = terminal.wait_for("write the weights")
    assert "last-edited.ckpt" in screen
    terminal.keys("Enter")
    terminal.wait_for("wrote")
    terminal.keys("q")
    assert wait_for_file(status) == "0"
    written = torch.load(tmp_path / "last-edited.ckpt", weights_only=True)
    assert list(written) == ["0.weight", "0.bias", "1.weight"]


def test_at_80x24_the_help_key_stays_and_w_writes_the_path_typed(
    terminal: Terminal, tmp_path: Path
) -> None:
    """A new user's first write, in a small terminal: `w` and the path typed at once."""
    (tmp_path / "x").mkdir()
    args = ("alexnet", "--input-shape", "1,3,224,224")
    status = start(terminal, tmp_path, *args, size=(80, 24))
    screen = terminal.wait_for("[random init]")
    assert screen.splitlines()[-1].strip().startswith("q Quit")
    assert "w Write ? Help ▏^p" in screen  # every key whole, help kept
    assert "61,100,840" in screen  # the root's count, not split inside

    terminal.keys("w", "x/alex10.safetensors", "Enter")
    screen = terminal.wait_for("wrote")
    status_lines = "".join(screen.splitlines()[-3:-1]).replace(" ", "")
    assert status_lines.startswith("wrotex/alex10.safetensors(16tensors,61.1Mparams")
    assert status_lines.endswith("·andalex10.safetensors.recipe.json"), screen

    terminal.keys("s")
    screen = terminal.wait_for("Conv2d (0)")
    assert "escape closes" in screen
    terminal.keys("Escape")  # alone: escape then q at once would read as alt+q
    deadline = time.monotonic() + 10
    while "escape closes" in terminal.screen() and time.monotonic() < deadline:
        time.sleep(0.1)
    terminal.keys("q")
    assert wait_for_file(status) == "0"
    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert names == ["alex10.safetensors", "alex10.safetensors.recipe.json"]
    assert "features.0.weight" in load_file(tmp_path / "x" / "alex10.safetensors")


def test_probe_alexnet_at_80x24(terminal: Terminal, tmp_path: Path) -> None:
    status = start(terminal, tmp_path, "alexnet", size=(80, 24))
    terminal.wait_for("[random init]")
    terminal.keys("p")
    terminal.wait_for("probe: run the model once")
    terminal.keys("Enter")
    screen = terminal.wait_for("no NaN/Inf", timeout=120)
    assert "probe: 24 modules in" in screen
    assert "▼ AlexNet 61.1M →1×1000" in screen
    assert "├─ ▶ features Sequential 2.5M →1×256×6×6" in screen
    assert "└─ ▶ classifier Sequential 58.6M →1×1000" in screen
    terminal.keys("q")
    assert wait_for_file(status) == "0"
