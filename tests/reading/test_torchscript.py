"""TorchScript archives are browsed from their saved state: their code is never loaded or run."""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from modelbrowse.core.errors import SourceError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.nodes import NodeKind
from modelbrowse.core.recipe import save_edited
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.options import AppOptions
from tests.app_support import open_app, wait_for_text

PACKAGE = Path(__file__).resolve().parents[2]


def script(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, and still what people have
        torch.jit.save(torch.jit.script(model), str(path))
    return path


class Overwrite(nn.Module):
    """Its `__setstate__` overwrites the first bytes of `target` (torch.jit.load runs it)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        # A tensor to TorchScript: `__setstate__` assigns the one it is given.
        self.scale: torch.Tensor = nn.Parameter(torch.ones(2))
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
        hit.fill_(70)
        self.seen = int(hit.sum())
        return x * self.scale

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor]:
        return (self.target, self.training, self.scale)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor]) -> None:
        self.target = state[0]
        self.training = state[1]
        self.scale = state[2]
        hit = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
        hit.fill_(66)
        self.seen = int(hit.sum())


class Hostile(nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.payload = Overwrite(target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.payload(self.body(x))
        return out


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    victim = tmp_path / "victim.rc"
    victim.write_bytes(b"AAAAAAAA\n")
    return script(Hostile(str(victim)), tmp_path / "hostile.pt"), victim


@pytest.fixture
def no_torch_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a loader that runs code from the file was called")

    monkeypatch.setattr(torch.jit, "load", refused)
    monkeypatch.setattr(torch._C, "import_ir_module", refused)
    monkeypatch.setattr(torch, "load", refused)


def test_the_hostile_archive_fires_under_torch_jit_load(hostile: tuple[Path, Path]) -> None:
    """The attack is real: torch's loader overwrites the file (so the tests below can fail)."""
    path, victim = hostile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert victim.read_bytes() == b"BBBBAAAA\n"


@pytest.mark.usefixtures("no_torch_loaders")
async def test_opening_a_hostile_archive_and_its_summary_leave_the_file_unchanged(
    hostile: tuple[Path, Path],
) -> None:
    path, victim = hostile
    source = resolve_source(str(path))
    module, _ = source.build_structure()
    assert ("own state", "1 module(s) saved through their own __getstate__: empty here") in (
        source.info
    )
    index = NodeIndex(module)
    assert [(n.path, n.type_name) for n in index.modules()] == [
        ("", "Hostile"),
        ("body", "Linear"),
        ("payload", "Overwrite"),
    ]
    async with open_app(AppOptions(str(path), input_shape="1,2"), size=(130, 40)) as (_app, pilot):
        await pilot.press("s")
        screen = await wait_for_text(pilot, "summary failed")
        assert "its scripted code is never run" in re.sub(r"\s+", " ", screen)
    assert victim.read_bytes() == b"AAAAAAAA\n"


@pytest.mark.usefixtures("no_torch_loaders")
def test_a_scripted_resnet18_keeps_its_tree_names_and_values(tmp_path: Path) -> None:
    model = torchvision.models.resnet18().eval()
    path = script(model, tmp_path / "resnet18.pt")
    source = resolve_source(str(path))
    tree, is_meta = source.build_structure()
    index = NodeIndex(tree)
    assert not is_meta
    assert ("scripted class", "ResNet") in source.info
    assert index.node("layer1.0").type_name == "BasicBlock"
    assert index.node("layer1.0.conv1").type_name == "Conv2d"
    assert index.node("layer1.0.bn1.running_mean").kind is NodeKind.BUFFER
    assert index.node("fc.weight").kind is NodeKind.PARAMETER
    assert index.totals().params == sum(p.numel() for p in model.parameters())
    assert not tree.training and not tree.get_submodule("layer1.0.bn1").training
    expected = model.state_dict()
    got = tree.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert source.edit_refusal is not None and "cannot be edited" in source.edit_refusal


@pytest.mark.usefixtures("no_torch_loaders")
def test_the_weights_are_written_as_a_state_dict(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    source = resolve_source(str(script(model, tmp_path / "scripted.pt")))
    out = tmp_path / "weights.safetensors"
    save_edited(source.build_real(0), out, source, 0, [])
    written = load_file(out)
    assert sorted(written) == sorted(model.state_dict())
    assert all(torch.equal(written[k], v) for k, v in model.state_dict().items())


class Frozen(nn.Module):
    """A frozen parameter, a buffer that looks like a weight, a plain tensor attribute, a
    mangled class name (two Linear classes) and a tie."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight
        self.embed.weight.requires_grad_(False)
        self.register_buffer("weight_scale", torch.ones(3))
        self.other = nn.Linear(3, 3)
        self.other.in_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(x) * self.weight_scale)
        return out


def test_parameters_and_buffers_come_from_the_code_then_from_the_saved_flags(
    tmp_path: Path,
) -> None:
    path = script(Frozen(), tmp_path / "frozen.pt")
    index = NodeIndex(resolve_source(str(path)).build_structure()[0])
    assert index.node("embed.weight").kind is NodeKind.PARAMETER  # frozen, still a parameter
    assert index.node("weight_scale").kind is NodeKind.BUFFER
    assert index.node("head").type_name == "Linear"
    assert index.node("head.weight").obj is index.node("embed.weight").obj

    # Without the code the saved requires_grad flag decides.
    bare = tmp_path / "bare.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bare, "w") as dst:
        for info in src.infolist():
            if "/code/" not in info.filename:
                dst.writestr(info, src.read(info))
    index = NodeIndex(resolve_source(str(bare)).build_structure()[0])
    assert index.node("embed.weight").kind is NodeKind.BUFFER
    assert index.node("other.weight").kind is NodeKind.PARAMETER


def test_a_data_pkl_that_is_not_a_module_is_refused_in_one_line(tmp_path: Path) -> None:
    path = script(nn.Linear(2, 2), tmp_path / "scripted.pt")
    marker = tmp_path / "marker"
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X"
        + len(f"touch {marker}").to_bytes(4, "little")
        + f"touch {marker}".encode()
        + b"\x85R."
    )
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = payload if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    with pytest.raises(SourceError) as caught:
        resolve_source(str(forged))
    assert str(caught.value) == (
        f"{forged}: data.pkl holds a os.system, not a scripted module; not readable"
    )
    assert not marker.exists()


def test_the_package_never_names_torch_jit_load() -> None:
    sources = [*(PACKAGE / "core").rglob("*.py"), *(PACKAGE / "tui").rglob("*.py")]
    assert sources
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for name in ("jit.load", "import_ir_module"):
            assert name not in text, f"{source.name} names {name}"
