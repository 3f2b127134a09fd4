"""What the probe feeds a model: seeded random inputs, token ids within the vocabulary, images
preprocessed as the model expects them, and tensor files read by the reading layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from modelbrowse.core.arguments import ExampleInput, parse_example_input
from modelbrowse.core.probe import ProbeError, probe_inputs, probe_target
from tests.fixtures.models import SharedNet


def _only(found: list[torch.Tensor] | dict[str, torch.Tensor]) -> torch.Tensor:
    """The one positional input."""
    assert isinstance(found, list) and len(found) == 1
    return found[0]


def test_random_inputs_repeat_with_their_seed() -> None:
    model = nn.Linear(4, 2)
    example = ExampleInput.of(((2, 4),))
    first = _only(probe_inputs(model, example, None, None, seed=1))
    again = _only(probe_inputs(model, example, None, None, seed=1))
    other = _only(probe_inputs(model, example, None, None, seed=2))
    assert first.shape == (2, 4) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_model_fed_tokens_gets_ids_within_its_vocabulary() -> None:
    model = SharedNet()  # nn.Embedding(10, 8) first
    ids = _only(probe_inputs(model, ExampleInput.of(((4, 64),)), None, None))
    assert ids.dtype == torch.int64 and ids.shape == (4, 64)
    assert int(ids.min()) >= 0 and int(ids.max()) <= 9 and len(set(ids.flatten().tolist())) == 10


def test_float_inputs_take_the_model_dtype_unless_given() -> None:
    model = nn.Linear(4, 2).to(torch.bfloat16)
    x = _only(probe_inputs(model, ExampleInput.of(((1, 4),)), None, None))
    assert x.dtype == torch.bfloat16
    y = _only(probe_inputs(model, parse_example_input("1,4:double"), None, None))
    assert y.dtype == torch.float64


def test_no_example_names_the_shape_to_give() -> None:
    with pytest.raises(ProbeError, match="give --input-shape 1,4 or --input FILE"):
        probe_inputs(nn.Linear(4, 2), None, None, None)


def _pixels(height: int, width: int) -> torch.Tensor:
    """A uint8 (3, H, W) gradient."""
    values = torch.arange(3 * height * width, dtype=torch.int64).reshape(3, height, width)
    return (values % 256).to(torch.uint8)


def _image(path: Path, height: int = 40, width: int = 50) -> Path:
    from PIL import Image

    Image.fromarray(_pixels(height, width).permute(1, 2, 0).numpy()).save(path)
    return path


def test_an_image_is_resized_and_normalised(tmp_path: Path) -> None:
    png = _image(tmp_path / "cat.png")
    x = _only(probe_inputs(nn.Conv2d(3, 4, 3), None, png, None))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) > -2.2 and float(x.max()) < 2.7  # ImageNet-normalised [0, 1]
    small = _only(probe_inputs(nn.Conv2d(3, 4, 3), ExampleInput.of(((1, 3, 64, 32),)), png, None))
    assert small.shape == (1, 3, 64, 32)


def test_an_image_goes_through_the_weights_own_transforms(tmp_path: Path) -> None:
    png = _image(tmp_path / "cat.png", 300, 400)
    x = _only(probe_inputs(nn.Conv2d(3, 4, 3), None, png, "AlexNet_Weights.IMAGENET1K_V1"))
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    expected = weights.transforms()(_pixels(300, 400))  # a PNG keeps the pixels exactly
    assert torch.equal(x, expected.unsqueeze(0))


def test_a_bmp_is_read_by_pillow_and_a_broken_image_is_one_line(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (30, 20), (255, 0, 0)).save(tmp_path / "red.bmp")
    x = _only(probe_inputs(nn.Conv2d(3, 4, 3), None, tmp_path / "red.bmp", None))
    assert x.shape == (1, 3, 224, 224) and float(x[0, 0].mean()) == pytest.approx(2.2489, 1e-3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ProbeError, match=r"--input .*broken.jpg: cannot read the image"):
        probe_inputs(nn.Conv2d(3, 4, 3), None, tmp_path / "broken.jpg", None)


def test_tensor_files_are_positional_or_keyword_inputs(tmp_path: Path) -> None:
    ids, mask = torch.arange(6).reshape(1, 6), torch.ones(1, 6, dtype=torch.int64)
    save_file({"input_ids": ids, "attention_mask": mask}, tmp_path / "lm.safetensors")
    found = probe_inputs(nn.Linear(1, 1), None, tmp_path / "lm.safetensors", None)
    assert isinstance(found, dict) and set(found) == {"input_ids", "attention_mask"}
    assert torch.equal(found["input_ids"], ids)
    x = torch.randn(2, 4)
    torch.save(x, tmp_path / "one.pt")
    got = _only(probe_inputs(nn.Linear(4, 1), None, tmp_path / "one.pt", None))
    assert torch.equal(got, x)
    torch.save({"1": x * 2, "0": x}, tmp_path / "two.pt")
    pair = probe_inputs(nn.Linear(4, 1), None, tmp_path / "two.pt", None)
    assert isinstance(pair, list) and torch.equal(pair[0], x) and torch.equal(pair[1], x * 2)


def test_a_pickle_naming_code_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ProbeError, match=r"--input .*evil.pt"):
        probe_inputs(nn.Linear(4, 1), None, tmp_path / "evil.pt", None)
    assert not marker.exists()


def test_the_target_is_one_tensor(tmp_path: Path) -> None:
    save_file({"labels": torch.tensor([1, 2])}, tmp_path / "y.safetensors")
    assert torch.equal(probe_target(tmp_path / "y.safetensors"), torch.tensor([1, 2]))
    save_file({"a": torch.zeros(1), "b": torch.zeros(1)}, tmp_path / "two.safetensors")
    with pytest.raises(ProbeError, match="expected one tensor, the file holds 2"):
        probe_target(tmp_path / "two.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ProbeError, match=r"notes.txt: expected a \.safetensors or a \.pt file"):
        probe_target(tmp_path / "notes.txt")
    with pytest.raises(ProbeError, match=r"notes.txt: expected an image \(\.png, "):
        probe_inputs(nn.Linear(4, 1), None, tmp_path / "notes.txt", None)
