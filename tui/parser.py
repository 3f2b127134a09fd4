"""The command line's grammar: every flag, its help, and the `--version` and `--print-config`
actions. Imports nothing heavy: `--help` answers without torch."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from modelbrowse.tui.console import PROG, error, write

DESCRIPTION = """\
Browse a PyTorch model in the terminal: a collapsible module tree and a detail pane for every
parameter and buffer (shape, dtype, device, requires_grad, sharing, statistics). Edit it from the
keyboard, write the weights, and load them back with modelbrowse.core.load_edited."""

EPILOG = """\
sources:
  alexnet, resnet50, vit_b_16, ...   any torchvision model name (case-insensitive)
  package.module:attr                an nn.Module subclass, a factory function or an instance
  ./net.py:Net                       the same, from a Python file

examples:
  modelbrowse alexnet
  modelbrowse resnet18 --kw num_classes=10
  modelbrowse mypkg.models:build_model --kw depth=12 --input-shape 1,3,64,64
  modelbrowse vit_b_16 --print --depth 2
  modelbrowse best.pth --check
  modelbrowse alexnet --print --probe --backward
  modelbrowse tuned.pt --check --against base.pt    (frozen per tuned.pt.recipe.json)
  modelbrowse alexnet --recipe alexnet-edited.pt.recipe.json --output again.pt
  modelbrowse alexnet --recipe alexnet-edited.pt.recipe.json      (the app, edits applied)
  modelbrowse ./dcp-step-1000 --arch ./llama/config.json --output ./llama-hf

Press ? in the app for every key."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelbrowse")
    except PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, reading the installed version only when asked (it costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


class _PrintConfigAction(argparse.Action):
    """`--print-config`: the config file's place and the keymap in effect, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from modelbrowse.core.errors import UsageError
        from modelbrowse.tui.keymap import describe_config, read_config

        try:
            text = describe_config(read_config())
        except UsageError as exc:
            parser.exit(error(str(exc)))
        write(text)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        help="torchvision model name, package.module:attr, file.py:attr, or a checkpoint file "
        "or folder (state_dict, safetensors, TorchScript, Hugging Face, distributed checkpoint)",
    )
    parser.add_argument(
        "--weights",
        metavar="NAME",
        help="pretrained torchvision weights: DEFAULT, IMAGENET1K_V1 or "
        "AlexNet_Weights.IMAGENET1K_V1 (downloads them; random initialisation without this flag)",
    )
    parser.add_argument(
        "--kw",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="keyword argument for the model's builder, a Python literal (repeatable): "
        "--kw num_classes=10",
    )
    parser.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="example input for the summary (s): 1,3,224,224; separate several inputs with ';' "
        "and give one its own dtype with ':' (1,16:long); zoo models have a default",
    )
    parser.add_argument(
        "--input-dtype",
        metavar="DTYPE",
        help="dtype of the example inputs without their own: long, int, float, half, bfloat16, "
        "double or bool (default: long when the model's first layer is an Embedding or it "
        "takes input_ids, else float)",
    )
    parser.add_argument(
        "--print",
        dest="print_tree",
        action="store_true",
        help="print the module tree as text and exit, without starting the app",
    )
    parser.add_argument(
        "--depth", type=int, metavar="N", help="with --print: only modules up to depth N"
    )
    parser.add_argument(
        "--select",
        metavar="PATTERN",
        help="with --print: the modules PATTERN matches (features.*, re:REGEX, cls:Linear, "
        "all-linear, a name) and their target_modules list",
    )
    parser.add_argument(
        "--detail",
        metavar="PATH",
        help="with --print: the detail pane of one module or tensor as text (features.0.weight, "
        "classifier[6]): a tensor's statistics and histogram, a module's totals and chart",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="with --print: the torchinfo summary for the example input (--input-shape) in "
        "place of the tree",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed for the random initialisation, recorded in the recipe (default: a fresh one)",
    )
    parser.add_argument(
        "--recipe",
        metavar="R.json",
        help="open SOURCE in the app with this recipe's edits applied (undoable, unsaved); "
        "with --output: rebuild SOURCE, replay the edits and write the result, without the app; "
        "with --check --against: the recipe whose frozen parameters are compared",
    )
    parser.add_argument(
        "--output",
        metavar="OUT.pt",
        help="with --recipe: where the weights go (.pt, .pth or .safetensors); "
        "OUT.recipe.json is written beside them. A folder (a name without those extensions) "
        "gets a Hugging Face model folder, from a Hugging Face or distributed checkpoint "
        "folder; without --recipe that folder is converted as it is (a distributed "
        "checkpoint with --arch CONFIG)",
    )
    parser.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="the largest safetensors shard of a Hugging Face folder written by --output or "
        "w: 5GB (the default), 500MB, 2GiB or a number of bytes",
    )
    parser.add_argument(
        "--dtype",
        metavar="DTYPE",
        help="with --output: write the floating tensors in bf16, fp16 or fp32 (those under a "
        "cast edit's path keep the dtype it gave them); recorded in the recipe",
    )
    parser.add_argument(
        "--merge",
        metavar="ADAPTER",
        help="with --output: merge this PEFT LoRA adapter folder into SOURCE (a Hugging Face "
        "folder or a weights file) and write the result (.safetensors, .pt or a folder), "
        "streamed shard by shard",
    )
    parser.add_argument(
        "--diff",
        metavar="OTHER",
        help="compare SOURCE with OTHER key by key (a fine-tuned checkpoint against its base); "
        "with --print, exit 0 when equal and 1 when different",
    )
    parser.add_argument(
        "--meta",
        action="store_true",
        help="shapes only: build on the meta device and never create values (no memory at any "
        "size; statistics say 'meta tensor: no data'; no edits or writing)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="scan every tensor and print one line per problem (NaN or Inf, all-zero or "
        "constant tensors, norm layers at their initial values, equal tensors stored twice, "
        "ties broken, with --arch); exit 0 when clean, 1 when something is found, 2 on a "
        "usage error or a source that cannot be read",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --check: the report as one JSON object"
    )
    parser.add_argument(
        "--against",
        metavar="REF",
        help="with --check: the parameters the recipe froze (SOURCE.recipe.json beside the "
        "file, or --recipe R) that differ between REF and SOURCE are problems too",
    )
    checkpoints = parser.add_argument_group("checkpoint files and folders")
    checkpoints.add_argument(
        "--arch",
        metavar="SOURCE",
        help="load the checkpoint into this architecture (any model source) with strict=False "
        "and report missing, unexpected and mismatched keys",
    )
    checkpoints.add_argument(
        "--key",
        metavar="NAME",
        help="the entry of a training checkpoint that holds the weights (found by itself "
        "when it is state_dict, model, ema, ...); dotted for nested dicts",
    )
    checkpoints.add_argument(
        "--keep-prefix",
        action="store_true",
        help="keep a 'module.' (DataParallel/DDP) or '_orig_mod.' prefix on every key",
    )
    checkpoints.add_argument(
        "--strip-prefix",
        metavar="PREFIX",
        help="keep only the keys under PREFIX (backbone.), without it",
    )
    checkpoints.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a file that holds pickled Python objects (a whole model). This runs code "
        "from the file: only for files you trust",
    )
    checkpoints.add_argument(
        "--device",
        metavar="DEVICE",
        help="where the tensors go: cpu (the default, for files saved on a GPU too) or cuda:N",
    )
    checkpoints.add_argument(
        "--keys-only",
        action="store_true",
        help="show a Hugging Face folder as its checkpoint's keys, without building the "
        "architecture from config.json (which needs transformers)",
    )
    probe = parser.add_argument_group("the probe (one pass on an example input)")
    probe.add_argument(
        "--probe",
        action="store_true",
        help="with --print: run the model once on the example input and print each module's "
        "output statistics (shape, mean, std, absmax, zeros, dead units, NaN/Inf) and the "
        "first module that produced NaN/Inf; exit 1 when one did",
    )
    probe.add_argument(
        "--input",
        metavar="FILE",
        help="with --probe, and for the app's probe (p): the input, an image (preprocessed by "
        "the --weights' transforms, else resized and ImageNet-normalised) or a "
        ".safetensors/.pt file of tensors (default: random, of --input-shape)",
    )
    probe.add_argument(
        "--train", action="store_true", help="with --probe: run in train mode (default: eval)"
    )
    probe.add_argument(
        "--backward",
        action="store_true",
        help="with --probe: a backward pass too (loss: the output's sum, or cross-entropy "
        "against --target); prints each parameter's gradient norm and the trainable "
        "parameters that got no gradient",
    )
    probe.add_argument(
        "--target",
        metavar="FILE",
        help="with --backward (or the app's probe): a .safetensors/.pt file holding the target "
        "tensor for cross-entropy (class indices, or probabilities of the output's shape)",
    )
    browser = parser.add_argument_group("in a browser")
    browser.add_argument(
        "--serve",
        action="store_true",
        help="serve the app at http://localhost:PORT for a web browser instead (needs "
        "textual-serve: pip install 'modelbrowse[serve]'); each page is its own session",
    )
    browser.add_argument(
        "--port", type=int, metavar="N", help="with --serve: the port (default 8000)"
    )
    # The app's process under --serve: its input and output are the server's pipes.
    parser.add_argument("--served", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument(
        "--print-config",
        action=_PrintConfigAction,
        help="show where the config file goes and the keys in effect, then exit",
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version number and exit")
    return parser
