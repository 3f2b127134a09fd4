"""The command line: exit status, what goes to stdout and stderr, and what gets imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision

from modelbrowse.tui.cli import main

COMMAND = Path(sys.executable).parent / "modelbrowse"
ROOT = Path(__file__).resolve().parents[2]


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_help_lists_the_flags_without_importing_torch() -> None:
    result = python(
        "import sys\n"
        "from modelbrowse.tui.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch imported for --help'\n"
        "assert 'textual' not in sys.modules, 'textual imported for --help'\n"
    )
    assert result.returncode == 0, result.stderr
    for flag in (
        "--print",
        "--depth",
        "--weights",
        "--kw",
        "--input-shape",
        "--debug",
        "--version",
    ):
        assert flag in result.stdout


def test_version() -> None:
    result = run_command("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("modelbrowse ")
    assert result.stdout.split()[1][0].isdigit()


def test_the_app_and_its_widgets_import_without_torch() -> None:
    """The frame is painted before torch is imported: nothing the app module loads may need it."""
    result = python(
        "import sys, pkgutil, importlib\n"
        "import modelbrowse.widgets as widgets, modelbrowse.tui.screens as screens\n"
        "for package in (widgets, screens):\n"
        "    for info in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(package.__name__ + '.' + info.name)\n"
        "import modelbrowse.tui.app\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    assert result.returncode == 0, result.stderr


def test_print_shows_the_tree_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["AlexNet", "--print", "--depth", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["(root)", "AlexNet", "61.1M"]
    assert out[1].split() == ["features", "Sequential", "2.5M"]
    assert out[3].split() == ["classifier", "Sequential", "58.6M"]
    assert "features.0" not in "\n".join(out)
    assert out[-1].startswith("Total params: 61,100,840 (61.1M)  trainable: 61,100,840  frozen: 0")


def test_print_of_a_file_source_marks_sharing_and_plain_tensors(
    capsys: pytest.CaptureFixture[str], models_file: Path
) -> None:
    assert main([f"{models_file}:SharedNet", "--print"]) == 0
    captured = capsys.readouterr()
    assert "decoder.proj  Linear       72  shared with encoder" in captured.out
    assert "Total params: 152  trainable: 152" in captured.out
    assert "mask is a plain tensor attribute" in captured.out + captured.err


@pytest.mark.parametrize("name", torchvision.models.list_models())
def test_every_torchvision_model_prints(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--print", "--depth", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("(root)")
    assert "Total params: " in captured.out
    assert captured.err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alexnett"], "unknown model 'alexnett' (did you mean: alexnet?)"),
        (["resnet18", "--kw", "num_classes"], "--kw expects NAME=VALUE, got 'num_classes'"),
        (["resnet18", "--kw", "bogus=1"], "resnet18"),
        (["no_such_package_xyz.models:Net"], "no_such_package_xyz"),
        (["tests/fixtures/models.py:Broken"], "Broken"),
        (["tests/fixtures/models.py:Nothing"], "Nothing"),
        (["./missing.py:Net"], "missing.py"),
    ],
)
def test_bad_sources_are_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_command(*args, "--print")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelbrowse: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = run_command("tests/fixtures/models.py:Broken", "--print", "--debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("modelbrowse: error: ")


def test_an_unexpected_error_is_one_line_naming_the_log_with_the_traceback(
    tmp_path: Path,
) -> None:
    code = (
        "import sys\n"
        "import modelbrowse.core.text_tree as text_tree\n"
        "def broken(*args, **kwargs):\n"
        "    return 1 / 0\n"
        "text_tree.render_tree_text = broken\n"
        "from modelbrowse.tui.cli import main\n"
        "sys.exit(main(['alexnet', '--print']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    log = tmp_path / "modelbrowse" / "log" / "modelbrowse.log"
    assert result.returncode == 1
    assert result.stderr == (
        "modelbrowse: error: unexpected error: ZeroDivisionError: division by zero "
        f"(traceback in {log})\n"
    )
    assert "in broken" in log.read_text()
    assert "alexnet --print" in log.read_text()


def test_app_without_a_terminal_says_so() -> None:
    result = run_command("alexnet")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "use --print for the tree as text, --serve for a browser (or ssh -t for a terminal)"
    )


def test_broken_torchvision_is_explained_and_import_paths_still_work(tmp_path: Path) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_command("alexnet", "--print", env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "operator torchvision::nms does not exist" in lines[0]
    assert "pip install" in lines[0]

    result = run_command("tests/fixtures/models.py:SharedNet", "--print", env=env)
    assert result.returncode == 0, result.stderr
    assert "SharedNet" in result.stdout


def saved_shared_net(directory: Path, models_file: Path) -> Path:
    """A SharedNet with one replace, saved with its recipe, as the app would."""
    from modelbrowse.core.edits.modules import Replace
    from modelbrowse.core.recipe import save_edited
    from modelbrowse.core.sources.base import resolve_source

    source = resolve_source(f"{models_file}:SharedNet")
    model = source.build_real(seed=3)
    edit = Replace("decoder.act", "nn.GELU()")
    edit.apply(model)
    save_edited(model, directory / "net.pt", source, 3, [edit])
    return directory / "net.pt.recipe.json"


def test_recipe_replays_without_the_app(tmp_path: Path, models_file: Path) -> None:
    recipe = saved_shared_net(tmp_path, models_file)
    result = run_command(
        f"{models_file}:SharedNet", "--recipe", str(recipe), "--output", str(tmp_path / "o.pt")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 'o.pt'} (")
    assert (tmp_path / "o.pt").read_bytes() == (tmp_path / "net.pt").read_bytes()


@pytest.mark.parametrize(
    ("source", "edit_json", "message"),
    [
        ("alexnet", None, "the recipe was written for"),
        (None, ("decoder.act", "decoder.gone"), "step 1 (replace decoder.gone"),
    ],
)
def test_a_recipe_that_does_not_apply_writes_nothing(
    tmp_path: Path,
    models_file: Path,
    source: str | None,
    edit_json: tuple[str, str] | None,
    message: str,
) -> None:
    recipe = saved_shared_net(tmp_path, models_file)
    if edit_json is not None:
        recipe.write_text(recipe.read_text().replace(*edit_json))
    result = run_command(
        source or f"{models_file}:SharedNet",
        "--recipe",
        str(recipe),
        "--output",
        str(tmp_path / "o.pt"),
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "o.pt").exists()


def test_output_goes_with_a_recipe_and_a_missing_recipe_is_one_line(tmp_path: Path) -> None:
    result = run_command("alexnet", "--output", str(tmp_path / "o.pt"))
    assert result.returncode == 2
    assert "--output goes with --recipe" in result.stderr

    # Alone, --recipe opens the app: a missing file is said before it starts.
    result = run_command("alexnet", "--recipe", str(tmp_path / "r.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"modelbrowse: error: no recipe at {tmp_path / 'r.json'}"

    result = run_command("alexnet", "--recipe", str(tmp_path / "r.json"), "--print")
    assert result.returncode == 2
    assert "leave out --print and --diff" in result.stderr

    result = run_command("alexnet", "--recipe", str(tmp_path / "r.json"), "--output", "o.pt")
    assert result.returncode == 2
    assert f"no recipe at {tmp_path / 'r.json'}" in result.stderr


def test_output_with_two_extensions_is_refused_not_written(tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text("{}")
    target = tmp_path / "alex.safetensors.pt"
    result = run_command("alexnet", "--recipe", str(recipe), "--output", str(target))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "modelbrowse: error: --output alex.safetensors.pt: only .pt counts, so it would be "
        "a torch.save zip, not .safetensors; name the file as it should be written"
    )
    assert not target.exists()


def test_an_error_quoting_a_hostile_name_prints_it_escaped(tmp_path: Path) -> None:
    path = tmp_path / "evil\x1b]0;pwned\x07.pt"
    path.write_text("<html>")
    result = run_command(str(path), "--print")
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "evil\\x1b]0;pwned\\x07.pt is an HTML page" in result.stderr


def test_print_config_shows_the_file_and_the_keys_in_effect(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    result = run_command("--print-config", env=env)
    config = tmp_path / "modelbrowse" / "config.toml"
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"config  {config} (not found: the defaults)"
    assert 'freeze           = "f"  # Freeze or unfreeze:' in result.stdout

    config.parent.mkdir()
    config.write_text('theme = "nord"\n[keys]\nfreeze = "F"\n')
    result = run_command("--print-config", env=env)
    assert result.stdout.splitlines()[0] == f"config  {config} (read)"
    assert 'theme = "nord"' in result.stdout.splitlines()
    assert 'freeze           = "F"  # Freeze or unfreeze:' in result.stdout
    assert result.stdout.count("# changed") == 1


def test_print_config_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from modelbrowse.tui.cli import main\n"
        "try:\n"
        "    main(['--print-config'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = python(code)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[keys]\nfrezee = "F"\n', "unknown action 'frezee' (did you mean freeze?)"),
        ('[keys]\nfreeze = "j"\n', "'j' is bound to both freeze and cursor_down"),
        ('[keys]\nfreeze = ""\n', 'keys for freeze must be Textual key names such as "F"'),
        ("[keys\n", "is not valid TOML: Expected ']'"),
        ("keys = 3\n", '[keys] must be a table of action = "key,key"'),
        ('theme = "nordd"\n', "unknown theme 'nordd' (did you mean nord?)"),
        ('them = "nord"\n', "unknown setting 'them' (did you mean theme?)"),
    ],
    ids=[
        "unknown-action",
        "conflict",
        "empty",
        "not-toml",
        "not-a-table",
        "unknown-theme",
        "unknown-setting",
    ],
)
def test_a_bad_config_is_one_line_before_the_app_starts(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "modelbrowse" / "config.toml"
    config.parent.mkdir()
    config.write_text(text)
    for args in (["--print-config"], ["alexnet"]):
        result = run_command(*args, env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert result.returncode == 2
        assert result.stderr.startswith(f"modelbrowse: error: {config}")
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_print_detail_of_a_tensor_and_a_module_as_text() -> None:
    first = run_command("alexnet", "--print", "--detail", "classifier[6].bias", "--seed", "5")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "classifier.6.bias"
    assert "shape          (1000,)" in lines
    assert "statistics     exact, of a random initialisation (--seed 5 repeats it)" in lines
    histogram = next(line for line in lines if line.startswith("histogram"))
    assert set(histogram.split()[1]) <= set(" ▁▂▃▄▅▆▇█") and len(histogram) > 60
    assert "μ" in lines[lines.index(histogram) + 1]
    assert "\x1b" not in first.stdout and all(line == line.rstrip() for line in lines)
    again = run_command("alexnet", "--print", "--detail", "classifier.6.bias", "--seed", "5")
    assert again.stdout == first.stdout

    module = run_command("alexnet", "--print", "--detail", "features")
    assert "parameters by child" in module.stdout
    assert "0 █" in module.stdout and "10 █" in module.stdout


def test_print_detail_says_a_constant_is_not_random(
    models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`torch.ones(8)` from a file's model is what the file sets, not a random draw."""
    assert main([f"{models_file}:SharedNet", "--print", "--detail", "scale"]) == 0
    constant = capsys.readouterr().out
    assert "statistics     exact: a constant, as models.py sets it (not random)" in (
        constant.splitlines()
    )
    assert "random initialisation" not in constant
    assert main([f"{models_file}:SharedNet", "--print", "--detail", "encoder.weight"]) == 0
    assert "exact, of a random initialisation (--seed" in capsys.readouterr().out

    assert main(["alexnet", "--print", "--detail", "features.0.weight", "--meta"]) == 0
    assert "statistics     meta tensor: no data" in capsys.readouterr().out


def test_print_detail_mistakes_are_one_line() -> None:
    result = run_command("alexnet", "--print", "--detail", "classifier.9")
    assert result.returncode == 2
    assert result.stderr == (
        "modelbrowse: error: no such path: 'classifier.9'; classifier has: 0, 1, 2, 3, 4, 5, 6\n"
    )
    result = run_command("alexnet", "--detail", "features")
    assert result.returncode == 2 and "--detail goes with --print" in result.stderr
