"""A checkpoint truncated after it was opened, then read another way: loaded into an
architecture, compared with --diff, re-initialised. Each is an error line, never a bus error.

The reading happens in a child process: a missed check is a bus error there, not the end of
the test run."""

from __future__ import annotations

from pathlib import Path

from tests.limits_support import run_script

SETUP = """
import os, shutil, sys, torch
from pathlib import Path
from torch import nn
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.sources.base import resolve_source
folder = Path(sys.argv[1])
(folder / "net.py").write_text(
    "from torch import nn\\n"
    "class Net(nn.Module):\\n"
    "    def __init__(self):\\n"
    "        super().__init__()\\n"
    "        self.a = nn.Linear(512, 512)\\n"
    "        self.b = nn.Linear(512, 512)\\n"
)
ARCH = str(folder / "net.py") + ":Net"

def checkpoint(name, dtype=torch.float32):
    torch.manual_seed(0)
    state = {k: v.to(dtype) for k, v in __import__("net").Net().state_dict().items()}
    path = folder / name
    torch.save(state, path)
    return path

def truncate(path):
    os.truncate(path, 1_100_000)  # a.weight and a.bias stay; b.weight is cut

def attempt(label, action):
    try:
        action()
        print(label, "read")
    except ModelBrowseError as exc:
        print(label, exc)

sys.path.insert(0, str(folder))
"""

READERS = (
    SETUP
    + """
from modelbrowse.core.diff import diff_states, state_for_diff
from modelbrowse.core.edits.reinit import Reinit

# Loaded into the architecture by copying (a real build, then load_state_dict).
path = checkpoint("copied.pt")
source = resolve_source(str(path), arch=ARCH)
source.build_structure()
truncate(path)
attempt("load", lambda: source.build_real(0))

# Taken into a meta build by assignment, converted to the architecture's dtype on the way.
path = checkpoint("converted.pt", torch.float64)
source = resolve_source(str(path), arch=ARCH)
truncate(path)
attempt("assign", source.build_structure)

# Compared with another file.
path = checkpoint("left.pt")
shutil.copy(path, folder / "right.pt")
left = state_for_diff(resolve_source(str(path)))
right = state_for_diff(resolve_source(str(folder / "right.pt")))
truncate(path)
attempt("diff", lambda: diff_states(left, right))

# Re-initialised: the old values are kept for undo.
path = checkpoint("reinit.pt")
model, _ = resolve_source(str(path)).build_structure()
truncate(path)
attempt("reinit", lambda: Reinit("b.weight", "zeros", 1).apply(model))
attempt("reinit kept", lambda: Reinit("a.weight", "zeros", 1).apply(model))
print("a zeroed", bool((model.a.weight == 0).all()))
"""
)


def run_child(script: str, folder: Path) -> list[str]:
    result = run_script(script, folder)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    return result.stdout.splitlines()


def test_reading_a_truncated_checkpoint_is_an_error_line(tmp_path: Path) -> None:
    lines = run_child(READERS, tmp_path)
    truncated = "was truncated while open (1,100,000 bytes, its data reaches"
    load, assign, diff, reinit, kept, zeroed = lines
    assert load.startswith("load b.weight: copied.pt ") and truncated in load
    assert assign.startswith("assign a.weight: converted.pt ") and truncated in assign
    assert diff.startswith("diff b.weight: left.pt ") and truncated in diff
    assert reinit.startswith("reinit b.weight: reinit.pt ") and truncated in reinit
    # What the file still holds is read as before.
    assert kept == "reinit kept read" and zeroed == "a zeroed True"


DIFF_COMMAND = (
    SETUP
    + """
from modelbrowse.core import diff
from modelbrowse.tui.cli import main

path = checkpoint("left.pt")
shutil.copy(path, folder / "right.pt")
mapped = diff.state_for_diff

def then_truncated(*args, **kwargs):
    state = mapped(*args, **kwargs)
    if os.path.getsize(path) > 1_100_000:
        truncate(path)  # after A is mapped: as if another program rewrote it meanwhile
    return state

diff.state_for_diff = then_truncated
sys.stdout.flush()
os._exit(main([str(path), "--diff", str(folder / "right.pt"), "--print"]))
"""
)


def test_diff_print_of_a_file_truncated_while_open_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_script(DIFF_COMMAND, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "b.weight: left.pt was truncated while open (1,100,000 bytes" in line
