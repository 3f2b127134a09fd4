"""Checkpoint files and folders: each format opens to the tensors that were saved, a training
checkpoint is described, pickled code never runs unasked, and every bad input is one clear line."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shlex
import struct
import subprocess
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torchvision
from safetensors.torch import save_file
from torch import nn

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.weights import DeleteKeys
from modelbrowse.core.errors import SourceError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.nodes import NodeKind
from modelbrowse.core.recipe import load_edited, read_recipe, replay_recipe, save_edited
from modelbrowse.core.saving.weights import read_weights, save_weights
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.sources.files import CheckpointOptions, open_checkpoint
from modelbrowse.core.sources.weights_tree import Weights, tree_from_state_dict
from tests.fixtures.models import SharedNet
from tests.saving_support import FORMATS, assert_same_tensors, one_line

RESNET18_PARAMS = 11_689_512
State = dict[str, torch.Tensor]


def small_net() -> nn.Sequential:
    """Linear, BatchNorm (trained statistics, an int64 counter) and a float16 layer."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2).half())
    model[1](torch.randn(8, 4))  # the running statistics and the counter leave their defaults
    return model


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def quietly(action: Callable[[], object]) -> None:
    """Run `action` without torch's deprecation and single-process warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        action()


# --- files a test writes -------------------------------------------------------------------


def write_training_checkpoint(directory: Path) -> tuple[Path, State, State]:
    """A training script's checkpoint: epoch, DDP-prefixed weights, an EMA copy, AdamW state
    with two parameter groups, metrics. Returns the path, the weights and the EMA weights."""
    model = small_net().float()
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
    groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=3e-4)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v * 2 if v.is_floating_point() else v.clone() for k, v in weights.items()}
    path = directory / "last.ckpt"
    torch.save(
        {
            "epoch": 12,
            "model": {f"module.{k}": v for k, v in weights.items()},
            "ema": {f"module.{k}": v for k, v in ema.items()},
            "optimizer": optimizer.state_dict(),
            "metrics": {"val_acc": 0.875},
        },
        path,
    )
    return path, weights, ema


def write_sharded_folder(folder: Path, state: State) -> list[str]:
    """A Hugging Face folder: config.json, two safetensors shards and their index."""
    folder.mkdir(exist_ok=True)
    keys = list(state)
    shards = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(folder / name), metadata={"format": "pt"})
    weight_map = {key: name for name, names in shards.items() for key in names}
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = {"model_type": "tiny", "architectures": ["TinyForTesting"], "hidden_size": 4}
    (folder / "config.json").write_text(json.dumps(config))
    return list(shards)


class RunsCode:
    """Unpickling this runs a shell command, as a malicious checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, State]:
    """A torchvision resnet18 state_dict saved with torch.save, and that state."""
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("resnet") / "resnet18.pth"
    torch.save(state, path)
    return path, state


# --- each format ---------------------------------------------------------------------------


def save_legacy(state: State, path: Path) -> None:
    torch.save(state, path, _use_new_zipfile_serialization=False)


def save_safetensors(state: State, path: Path) -> None:
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("name", "save", "file_format"),
    [
        ("net.pt", torch.save, "torch"),
        ("net.pth", torch.save, "torch"),
        ("pytorch_model.bin", torch.save, "torch"),
        ("epoch=3.ckpt", torch.save, "torch"),
        ("legacy.pt", save_legacy, "torch (legacy format)"),
        ("net.safetensors", save_safetensors, "safetensors"),
        ("safetensors-named.pt", save_safetensors, "safetensors"),
    ],
)
def test_each_format_opens_to_the_tensors_that_were_saved(
    tmp_path: Path, name: str, save: Callable[[State, Path], None], file_format: str
) -> None:
    state = small_net().state_dict()
    save(state, tmp_path / name)
    source = resolve_source(str(tmp_path / name))
    tree, is_meta = source.build_structure()
    assert source.kind == "checkpoint"
    assert source.info[0] == ("format", file_format)
    assert source.weights_only
    assert not is_meta
    assert isinstance(tree, Weights)
    assert_same_tensors(tree.state_dict(), state)


def write_safetensors_by_hand(path: Path, header_size: int) -> torch.Tensor:
    """One float32 tensor `w`, its JSON header padded with spaces to `header_size` bytes."""
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    entry = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    header = json.dumps({"w": entry}).encode()
    header += b" " * (header_size - len(header))
    path.write_bytes(struct.pack("<Q", header_size) + header + tensor.numpy().tobytes())
    return tensor


def test_safetensors_whose_header_length_reads_like_a_pickle_opcode(tmp_path: Path) -> None:
    path = tmp_path / "small.safetensors"
    tensor = write_safetensors_by_hand(path, header_size=128)
    assert path.read_bytes()[:2] == b"\x80\x00"  # pickle's PROTO opcode, protocol 0
    checkpoint = open_checkpoint(str(path))
    assert_same_tensors(checkpoint.tensors, {"w": tensor})


def test_tree_guesses_buffers_from_their_names() -> None:
    index = NodeIndex(tree_from_state_dict(small_net().state_dict()))
    assert index.node("1.weight").kind is NodeKind.PARAMETER
    assert index.node("1.running_mean").kind is NodeKind.BUFFER
    assert index.node("1.num_batches_tracked").kind is NodeKind.BUFFER
    assert index.node("3").type_name == "Group"


def test_torchscript_shows_the_scripted_modules_and_their_tensors(tmp_path: Path) -> None:
    model = small_net()
    path = tmp_path / "scripted.pt"
    quietly(lambda: torch.jit.save(torch.jit.script(model), str(path)))
    source = resolve_source(str(path))
    module, is_meta = source.build_structure()
    index = NodeIndex(module)
    assert ("format", "TorchScript") in source.info
    assert ("scripted class", "Sequential") in source.info
    assert not source.weights_only
    assert not is_meta
    assert [node.path for node in index.modules()] == ["", "0", "1", "2", "3"]
    assert index.node("0.weight").kind is NodeKind.PARAMETER
    assert index.node("1.running_var").kind is NodeKind.BUFFER
    assert_same_tensors(module.state_dict(), model.state_dict())


def test_a_folder_with_one_checkpoint_opens_that_file(tmp_path: Path) -> None:
    state = small_net().state_dict()
    torch.save(state, tmp_path / "only.pth")
    (tmp_path / "notes.txt").write_text("trained on a Tuesday")
    checkpoint = open_checkpoint(str(tmp_path))
    assert checkpoint.files == [tmp_path / "only.pth"]
    assert_same_tensors(checkpoint.tensors, state)


# --- a torchvision state_dict, with and without its architecture ---------------------------


def test_resnet18_state_dict_opens_as_a_tree_of_its_keys(resnet18_file: tuple[Path, State]) -> None:
    path, state = resnet18_file
    tree, _ = resolve_source(str(path)).build_structure()
    index = NodeIndex(tree)
    assert_same_tensors(tree.state_dict(), state)
    assert [node.path for node in index.child_modules("")][:3] == ["conv1", "bn1", "layer1"]
    assert index.totals().params == RESNET18_PARAMS


def test_resnet18_file_fits_resnet18(resnet18_file: tuple[Path, State]) -> None:
    path, state = resnet18_file
    source = resolve_source(str(path), arch="resnet18")
    model, is_meta = source.build_structure()
    assert isinstance(model, torchvision.models.ResNet)
    assert not is_meta  # the file's tensors were taken as they are
    assert source.fit is not None and source.fit.fits
    assert source.fit.summary() == f"fits resnet18: all {len(state)} tensors loaded"
    assert not source.weights_only
    assert_same_tensors(model.state_dict(), state)


def test_resnet18_file_into_resnet34_reports_the_missing_blocks(
    resnet18_file: tuple[Path, State],
) -> None:
    path, state = resnet18_file
    with torch.device("meta"):
        resnet34_keys = list(torchvision.models.resnet34().state_dict())
    source = resolve_source(str(path), arch="resnet34")
    _, is_meta = source.build_structure()
    fit = source.fit
    assert fit is not None
    assert is_meta  # the missing tensors have no values until the real build
    assert len(fit.loaded) == len(state)
    assert fit.missing == [key for key in resnet34_keys if key not in state]
    assert len(fit.missing) == 96
    assert "layer3.5.conv2.weight" in fit.missing
    assert not fit.unexpected and not fit.mismatched
    assert "96 missing" in dict(source.info)["fit"]

    model = source.build_real(seed=0)
    real = model.state_dict()
    assert not any(tensor.is_meta for tensor in real.values())
    assert_same_tensors({key: real[key] for key in state}, state)
    # The missing ones are initialised as resnet34 does: random convolutions, unit variances.
    assert model.get_parameter("layer3.5.conv2.weight").std() > 0
    assert torch.equal(model.get_buffer("layer3.5.bn2.running_var"), torch.ones(256))


# --- training checkpoints ------------------------------------------------------------------


def test_training_checkpoint_finds_the_weights_and_describes_the_rest(tmp_path: Path) -> None:
    path, weights, _ = write_training_checkpoint(tmp_path)
    source = resolve_source(str(path))
    tree, _ = source.build_structure()
    rows = dict(source.info)
    assert_same_tensors(tree.state_dict(), weights)
    assert rows["weights from"] == "['model'] (also there: ema; choose with --key)"
    assert rows["epoch"] == "12"
    assert rows["optimizer"] == "AdamW optimizer state, 2 parameter groups, lr 0.0003"
    assert rows["metrics"] == "val_acc=0.875"
    assert rows["key prefix"] == "'module.' stripped from every key (--keep-prefix keeps it)"


def test_dtypes_beside_the_weights_show_as_torch_names(tmp_path: Path) -> None:
    state = small_net().state_dict()
    extras = {"dtype": torch.bfloat16, "amp": {"dtype": torch.float16, "enabled": True}}
    torch.save({"model": state, **extras}, tmp_path / "amp.pt")
    rows = dict(resolve_source(str(tmp_path / "amp.pt")).info)
    assert rows["dtype"] == "torch.bfloat16"
    assert rows["amp"] == "dtype=torch.float16, enabled=True"


def test_key_chooses_another_entry(tmp_path: Path) -> None:
    path, weights, ema = write_training_checkpoint(tmp_path)
    source = resolve_source(str(path), checkpoint=CheckpointOptions(key="ema"))
    tree, _ = source.build_structure()
    rows = dict(source.info)
    assert_same_tensors(tree.state_dict(), ema)
    assert rows["weights from"] == "['ema'] (--key)"
    assert rows["model"] == f"dict of {len(weights)} entries"


def test_key_reaches_into_nested_dicts(tmp_path: Path) -> None:
    state = small_net().state_dict()
    torch.save({"trainer": {"student": state, "step": 9}}, tmp_path / "nested.pt")
    checkpoint = open_checkpoint(
        str(tmp_path / "nested.pt"), CheckpointOptions(key="trainer.student")
    )
    assert_same_tensors(checkpoint.tensors, state)


def test_keep_prefix_keeps_the_wrapper_prefix(tmp_path: Path) -> None:
    path, weights, _ = write_training_checkpoint(tmp_path)
    source = resolve_source(str(path), checkpoint=CheckpointOptions(keep_prefix=True))
    tree, _ = source.build_structure()
    assert list(tree.state_dict()) == [f"module.{key}" for key in weights]
    assert [node.path for node in NodeIndex(tree).child_modules("")] == ["module"]
    assert dict(source.info)["key prefix"] == "every key starts with 'module.' (kept)"


def test_strip_prefix_keeps_only_the_keys_under_it(tmp_path: Path) -> None:
    state = small_net().state_dict()
    torch.save(
        {**{f"backbone.{k}": v for k, v in state.items()}, "head.weight": torch.ones(2)},
        tmp_path / "detector.pt",
    )
    checkpoint = open_checkpoint(
        str(tmp_path / "detector.pt"), CheckpointOptions(strip_prefix="backbone.")
    )
    assert_same_tensors(checkpoint.tensors, state)
    assert ("key prefix", "'backbone.' stripped (--strip-prefix); 1 other keys left out") in (
        checkpoint.info
    )


def test_a_missing_key_names_the_entries_there_are(tmp_path: Path) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    with pytest.raises(SourceError) as caught:
        open_checkpoint(str(path), CheckpointOptions(key="state_dict"))
    message = one_line(caught)
    assert message.startswith("--key 'state_dict': ")
    assert "has no such entry (it has: epoch, model, ema, optimizer, metrics)" in message


# --- tied weights --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tied.pt", "tied.safetensors"])
def test_tied_weights_are_one_tensor_under_two_paths(tmp_path: Path, name: str) -> None:
    model = SharedNet()
    path = tmp_path / name
    if name.endswith(".pt"):
        torch.save(model.state_dict(), path)
    else:
        save_weights(model, path)  # safetensors keeps one copy and records the alias
    tree, _ = resolve_source(str(path)).build_structure()
    index = NodeIndex(tree)
    assert sorted(index.aliases("head.weight")) == ["embed.weight", "head.weight"]
    assert sorted(index.aliases("encoder.weight")) == ["decoder.proj.weight", "encoder.weight"]
    assert tree.get_parameter("head.weight") is tree.get_parameter("embed.weight")
    assert_same_tensors(tree.state_dict(), model.state_dict())
    # embed.weight (= head.weight), encoder.weight and .bias (= decoder.proj.*), scale.
    unique = [
        model.embed.weight,
        model.encoder.weight,
        model.encoder.bias,
        model.get_buffer("scale"),
    ]
    totals = index.totals()
    assert len(tree.state_dict()) == 7
    assert totals.tensors == 4
    assert totals.params + totals.buffers == sum(t.numel() for t in unique)


# --- Hugging Face folders ------------------------------------------------------------------


def test_sharded_hugging_face_folder_has_the_keys_of_every_shard(tmp_path: Path) -> None:
    state = small_net().state_dict()
    shards = write_sharded_folder(tmp_path / "tiny-model", state)
    source = resolve_source(str(tmp_path / "tiny-model"))
    tree, _ = source.build_structure()
    assert_same_tensors(tree.state_dict(), state)
    assert source.info[0] == ("format", "Hugging Face folder (safetensors)")
    assert ("config model_type", "tiny") in source.info
    assert ("config architectures", "TinyForTesting") in source.info
    assert ("config hidden_size", "4") in source.info
    assert [path.name for path in source.files] == [*shards, "config.json"]


def test_sharded_folder_lists_each_metadata_row_once(tmp_path: Path) -> None:
    write_sharded_folder(tmp_path / "tiny-model", small_net().state_dict())
    info = resolve_source(str(tmp_path / "tiny-model")).info
    assert info.count(("metadata format", "pt")) == 1


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    shards = write_sharded_folder(tmp_path / "tiny-model", small_net().state_dict())
    (tmp_path / "tiny-model" / shards[1]).unlink()
    with pytest.raises(SourceError) as caught:
        open_checkpoint(str(tmp_path / "tiny-model"))
    assert one_line(caught) == (
        "model.safetensors.index.json names shards that are missing: "
        "model-00002-of-00002.safetensors"
    )


# --- torch.distributed.checkpoint ----------------------------------------------------------


def trained_with_sgd() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = small_net().float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_distributed_checkpoint_opens_on_meta_then_reads_the_values(tmp_path: Path) -> None:
    model, optimizer = trained_with_sgd()
    folder = tmp_path / "step-5"
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 5}
    quietly(lambda: dcp.save(state, checkpoint_id=str(folder)))
    expected = model.state_dict()

    source = resolve_source(str(folder))
    tree, is_meta = source.build_structure()
    structure = tree.state_dict()
    assert is_meta
    assert NodeIndex(tree).is_meta
    assert list(structure) == list(expected)
    for key, tensor in expected.items():
        assert structure[key].is_meta, key
        assert (structure[key].shape, structure[key].dtype) == (tensor.shape, tensor.dtype), key
    rows = dict(source.info)
    assert rows["format"] == "torch.distributed.checkpoint"
    assert rows["weights from"] == "'model'"
    assert rows["other entries"] == "optimizer"

    assert_same_tensors(source.build_real().state_dict(), expected)


def test_distributed_checkpoint_of_model_and_step_takes_the_model_entry(tmp_path: Path) -> None:
    model, _ = trained_with_sgd()
    folder = tmp_path / "step-5"
    quietly(lambda: dcp.save({"model": model.state_dict(), "step": 5}, checkpoint_id=str(folder)))
    source = resolve_source(str(folder))
    assert list(source.build_structure()[0].state_dict()) == list(model.state_dict())


def test_distributed_checkpoint_of_a_plain_state_dict_keeps_every_key(tmp_path: Path) -> None:
    class CausalLM(nn.Module):
        """The Hugging Face layout: the body under `model`, a head beside it."""

        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Linear(4, 4)
            self.lm_head = nn.Linear(4, 10)

    state = CausalLM().state_dict()
    folder = tmp_path / "lm"
    quietly(lambda: dcp.save(state, checkpoint_id=str(folder)))
    tree, _ = resolve_source(str(folder)).build_structure()
    assert list(tree.state_dict()) == list(state)


# --- pickled code ---------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize(
    "force_no_weights_only", [False, True], ids=["env-unset", "env-forces-unsafe"]
)
def test_a_pickle_that_runs_code_is_refused_and_the_code_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool, force_no_weights_only: bool
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "innocent.pt"
    payload = {"weight": torch.ones(2), "extra": RunsCode(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    if force_no_weights_only:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(SourceError) as caught:
        resolve_source(str(path))
    message = one_line(caught)
    assert "runs code from the file" in message
    assert "Pass --trust-pickle only if you trust where it came from" in message
    assert not marker.exists()


class Payload:
    """Unpickling this calls `function(argument)`; each variant touches the marker file."""

    def __init__(self, function: Callable[..., object], argument: object) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object]]:
        return self.function, (self.argument,)


def payloads(marker: Path) -> dict[str, Payload]:
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": Payload(os.system, f"touch {shlex.quote(str(marker))}"),
        "builtins.exec": Payload(builtins.exec, touch),
        "builtins.eval": Payload(builtins.eval, touch),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
    }


@pytest.mark.parametrize(
    "function", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen"]
)
@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("model.pt", lambda p: {"weight": torch.ones(2), "extra": p}),
        (
            "checkpoint.pth",
            lambda p: {"epoch": 3, "model": {"state_dict": {"w": torch.ones(2)}, "x": [p]}},
        ),
        ("model.safetensors", lambda p: {"weight": torch.ones(2), "extra": p}),
        ("pytorch_model.bin", lambda p: {"weight": torch.ones(2), "extra": p}),
    ],
    ids=["plain", "nested-in-a-training-checkpoint", "zip-named-safetensors", "zip-named-bin"],
)
def test_malicious_pickles_are_refused_and_never_run(
    tmp_path: Path, function: str, name: str, wrap: Callable[[Payload], object]
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save(wrap(payloads(marker)[function]), path)
    for options in (CheckpointOptions(), CheckpointOptions(keys_only=True)):
        with pytest.raises(SourceError) as caught:
            resolve_source(str(path), checkpoint=options)
        message = one_line(caught)
        assert "runs code from the file" in message
        assert function.rpartition(".")[2] in message  # what it would call is named
        assert "weights_only=False" not in message
    assert not marker.exists()


def test_the_malicious_pickle_does_run_code_when_trusted(tmp_path: Path) -> None:
    # The check that the refusal above guards against something real.
    marker = tmp_path / "pwned"
    torch.save(
        {"state_dict": {"weight": torch.ones(2)}, "extra": RunsCode(marker)}, tmp_path / "x.pt"
    )
    checkpoint = open_checkpoint(str(tmp_path / "x.pt"), CheckpointOptions(trust_pickle=True))
    assert marker.exists()
    assert checkpoint.warnings == [
        "trusted pickle: loading this file ran code from it; it imports posix.system"
    ]
    assert ("extra", "0") in checkpoint.info  # what os.system returned


def test_a_plain_pickle_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with open(tmp_path / "weights.pkl", "wb") as handle:
        pickle.dump({"extra": RunsCode(marker)}, handle)
    for trust in (False, True):
        with pytest.raises(SourceError, match="is a plain Python pickle, not a torch checkpoint"):
            open_checkpoint(str(tmp_path / "weights.pkl"), CheckpointOptions(trust_pickle=trust))
    assert not marker.exists()


def test_a_whole_pickled_model_needs_trust_and_names_what_it_imports(tmp_path: Path) -> None:
    model = SharedNet()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(SourceError) as caught:
        resolve_source(str(path))
    message = one_line(caught)
    imported = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert "tests.fixtures.models.SharedNet" in imported
    assert "; it imports " in message
    assert any(name in message for name in imported)
    assert "--trust-pickle" in message

    source = resolve_source(str(path), checkpoint=CheckpointOptions(trust_pickle=True))
    module, is_meta = source.build_structure()
    assert type(module) is SharedNet
    assert not is_meta
    assert not source.weights_only
    assert ("format", "pickled model") in source.info
    (warning,) = source.warnings
    assert warning.startswith("trusted pickle: loading this file ran code from it; it imports ")
    assert "tests.fixtures.models.SharedNet" in warning
    assert_same_tensors(module.state_dict(), model.state_dict())


def test_the_refusal_names_the_models_own_class_before_torch_classes(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    # Five torch classes are named before the model's own, and the message shows four names.
    torch.save(
        {
            "layers": [nn.Linear(1, 1), nn.ReLU(), nn.Tanh(), nn.GELU(), nn.Sigmoid()],
            "model": SharedNet(),
        },
        path,
    )
    with pytest.raises(SourceError) as caught:
        resolve_source(str(path))
    message = one_line(caught)
    names = message.partition("; it imports ")[2].partition(". Pass")[0]
    assert names.startswith("tests.fixtures.models.SharedNet, torch.nn.modules.")
    assert names.endswith(" more")


def test_arch_does_not_apply_to_a_whole_pickled_model(tmp_path: Path) -> None:
    torch.save(SharedNet(), tmp_path / "whole.pt")
    with pytest.raises(SourceError, match=r"holds a whole model .*: --arch does not apply"):
        resolve_source(
            str(tmp_path / "whole.pt"),
            arch="resnet18",
            checkpoint=CheckpointOptions(trust_pickle=True),
        )


# --- bad input -------------------------------------------------------------------------------


def missing_path(directory: Path) -> Path:
    return directory / "nowhere.pt"


def empty_directory(directory: Path) -> Path:
    (directory / "run-42").mkdir()
    return directory / "run-42"


def empty_file(directory: Path) -> Path:
    (directory / "empty.pt").write_bytes(b"")
    return directory / "empty.pt"


def truncated_torch_file(directory: Path) -> Path:
    torch.save(small_net().state_dict(), directory / "cut.pt")
    return cut_in_half(directory / "cut.pt")


def safetensors_cut_in_its_header(directory: Path) -> Path:
    save_file(small_net().state_dict(), str(directory / "cut.safetensors"))
    return cut_in_half(directory / "cut.safetensors")


def safetensors_cut_in_its_data(directory: Path) -> Path:
    save_file({"weight": torch.ones(64, 64)}, str(directory / "cut.safetensors"))
    return cut_in_half(directory / "cut.safetensors")


def text_file(directory: Path) -> Path:
    (directory / "model.pt").write_text("These weights are available on request.\n")
    return directory / "model.pt"


def html_page(directory: Path) -> Path:
    page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n"
    (directory / "model.pth").write_text(page)
    return directory / "model.pth"


def git_lfs_pointer(directory: Path) -> Path:
    pointer = (
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 46830571\n"
    )
    (directory / "pytorch_model.bin").write_text(pointer)
    return directory / "pytorch_model.bin"


def json_file(directory: Path) -> Path:
    (directory / "weights.pt").write_text(json.dumps({"architectures": ["BertModel"]}))
    return directory / "weights.pt"


def safetensors_with_a_garbage_header(directory: Path) -> Path:
    header = b'{"weight": {"dtype": F32, shape: ['
    data = struct.pack("<Q", len(header)) + header + bytes(64)
    (directory / "model.safetensors").write_bytes(data)
    return directory / "model.safetensors"


def zip_that_is_not_torch(directory: Path) -> Path:
    with zipfile.ZipFile(directory / "weights.pt", "w") as archive:
        archive.writestr("README.md", "not weights")
        archive.writestr("data/train.csv", "a,b\n1,2\n")
    return directory / "weights.pt"


def plain_pickle(directory: Path) -> Path:
    with open(directory / "weights.pkl", "wb") as handle:
        pickle.dump({"weight": [1.0, 2.0]}, handle)
    return directory / "weights.pkl"


def named_pipe(directory: Path) -> Path:
    path = directory / "weights.pt"
    os.mkfifo(path)  # opening it to read would wait for a writer forever
    return path


def device(directory: Path) -> Path:
    return Path("/dev/zero")  # reading it never ends


# Each bad input: how the test makes it, and words its one-line message must hold.
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing-path": (missing_path, ("no such file or directory",)),
    "empty-directory": (empty_directory, ("is a directory without a model",)),
    "empty-file": (empty_file, ("is empty (0 bytes)",)),
    "truncated-pt": (truncated_torch_file, ("truncated", "zip")),
    "cut-header": (safetensors_cut_in_its_header, ("safetensors", "truncated")),
    "cut-data": (safetensors_cut_in_its_data, ("safetensors", "truncated")),
    "text": (text_file, ("is a text file, not a model checkpoint",)),
    "html": (html_page, ("is an HTML page",)),
    "git-lfs-pointer": (git_lfs_pointer, ("Git LFS pointer", "git lfs pull")),
    "json": (json_file, ("is a JSON file, not a model checkpoint",)),
    "garbage-header": (safetensors_with_a_garbage_header, ("safetensors", "header")),
    "other-zip": (zip_that_is_not_torch, ("is a zip archive but not a torch checkpoint",)),
    "plain-pickle": (plain_pickle, ("plain Python pickle",)),
    "named-pipe": (named_pipe, ("is a named pipe (FIFO), not a file",)),
    "device": (device, ("is a device, not a file",)),
}


@pytest.mark.parametrize(
    ("make", "words"),
    [pytest.param(make, words, id=name) for name, (make, words) in BAD_INPUTS.items()],
)
def test_bad_input_is_one_line_naming_the_file_and_what_is_wrong(
    tmp_path: Path, make: Callable[[Path], Path], words: tuple[str, ...]
) -> None:
    path = make(tmp_path)
    with pytest.raises(SourceError) as caught:
        resolve_source(str(path))
    message = one_line(caught)
    assert path.name in message
    for word in words:
        assert word in message


def test_files_open_by_what_their_bytes_are_not_their_names(
    tmp_path: Path,
) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "model.pt"
    save_file({"layer.weight": torch.ones(2, 3)}, path)
    link = tmp_path / "link.safetensors"
    link.symlink_to(path)
    disguised = tmp_path / "torch.safetensors"  # the other way round: a torch archive
    torch.save({"layer.weight": torch.ones(2, 3)}, disguised)
    for opened in (path, link, disguised):
        model, _ = resolve_source(str(opened)).build_structure()
        assert dict(model.named_parameters())["layer.weight"].shape == (2, 3)


def test_an_architecture_no_key_fits_is_refused_with_the_prefix_to_strip(
    tmp_path: Path, models_file: Path
) -> None:
    state = SharedNet().state_dict()
    path = tmp_path / "detector.pt"
    torch.save({f"backbone.{k}": v for k, v in state.items()}, path)
    source = resolve_source(str(path), arch=f"{models_file}:SharedNet")
    with pytest.raises(SourceError) as caught:
        source.build_structure()
    message, *samples = str(caught.value).splitlines()
    assert message.startswith(f"none of the {len(state)} tensors in {path} fit ")
    assert "fit once the prefix 'backbone.' is removed (--strip-prefix backbone.)" in message
    assert [line.split(":")[0] for line in samples] == ["  checkpoint", "  model"]

    source = resolve_source(
        str(path),
        arch=f"{models_file}:SharedNet",
        checkpoint=CheckpointOptions(strip_prefix="backbone."),
    )
    model = source.build_real()
    assert source.fit is not None and source.fit.fits
    assert_same_tensors(model.state_dict(), state)


@pytest.mark.parametrize("keys", [["", "weight"], [".weight", "weight"]], ids=["empty", "dot"])
def test_keys_with_an_empty_part_are_refused_not_lost(keys: list[str]) -> None:
    state = {key: torch.full((2,), float(number)) for number, key in enumerate(keys)}
    with pytest.raises(SourceError):
        tree_from_state_dict(state)


# --- weight edits and saving ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["1", "0.weight", "1.running_mean", "3"])
def test_delete_keys_removes_them_and_undo_puts_them_back_in_order(path: str) -> None:
    state = small_net().state_dict()
    tree = tree_from_state_dict(state)
    edit = DeleteKeys(path)
    edit.apply(tree)
    assert list(tree.state_dict()) == [
        key for key in state if key != path and not key.startswith(path + ".")
    ]
    edit.undo(tree)
    assert list(tree.state_dict()) == list(state)
    assert_same_tensors(tree.state_dict(), state)


@pytest.mark.parametrize(("path", "message"), [("", "the root"), ("4", "no key or prefix '4'")])
def test_delete_keys_refuses_the_root_and_unknown_keys(path: str, message: str) -> None:
    tree = tree_from_state_dict(small_net().state_dict())
    with pytest.raises(EditError, match=message):
        DeleteKeys(path).apply(tree)


@pytest.mark.parametrize("fmt", FORMATS)
def test_checkpoint_without_architecture_saves_and_loads_back(tmp_path: Path, fmt: str) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    source = resolve_source(str(path))
    tree = source.build_real()
    edit = DeleteKeys("1")
    edit.apply(tree)
    out = tmp_path / f"pruned.{fmt}"
    save_edited(tree, out, source, None, [edit])

    loaded = load_edited(out)
    assert isinstance(loaded, Weights)
    assert_same_tensors(loaded.state_dict(), read_weights(out))
    assert_same_tensors(loaded.state_dict(), tree.state_dict())
    assert not any(key.startswith("1.") for key in loaded.state_dict())
    recipe = read_recipe(f"{out}.recipe.json")
    source_record = recipe["source"]
    assert (source_record["kind"], source_record["spec"]) == ("checkpoint", str(path))
    assert source_record["arch"] is None
    assert recipe["edits"] == [{"op": "delete_keys", "path": "1"}]

    again = replay_recipe(f"{out}.recipe.json", source, tmp_path / f"again.{fmt}")
    assert_same_tensors(read_weights(again.path), read_weights(out))


def test_checkpoint_with_architecture_loads_back_as_that_class(
    tmp_path: Path, resnet18_file: tuple[Path, State]
) -> None:
    path, state = resnet18_file
    source = resolve_source(str(path), arch="resnet18")
    model = source.build_real()
    out = tmp_path / "resnet18-again.safetensors"
    save_edited(model, out, source, None, [])

    loaded = load_edited(out)
    assert type(loaded) is torchvision.models.ResNet
    assert_same_tensors(loaded.state_dict(), state)


def test_a_torchscript_archive_with_damaged_data_is_refused_before_torch_reads_it(
    tmp_path: Path,
) -> None:
    """Some damaged archives make torch.jit.load abort the process: checksums come first."""
    import zipfile

    path = tmp_path / "scripted.pt"
    quietly(lambda: torch.jit.save(torch.jit.script(nn.Linear(4, 3)), str(path)))
    with zipfile.ZipFile(path) as archive:
        entry = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, entry.header_offset + 26)
    data[entry.header_offset + 30 + name_length + extra_length + 1] ^= 0xFF  # in its values
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError) as caught:
        resolve_source(str(path))
    assert one_line(caught) == (
        f"{path} is a damaged TorchScript archive: {entry.filename} fails its checksum "
        "(changed or cut since it was written?)"
    )
