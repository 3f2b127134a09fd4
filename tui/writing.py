"""Commands that write without the app: `SOURCE --recipe R.json --output OUT` and
`FOLDER --output HF_FOLDER`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.tui.console import error

if TYPE_CHECKING:
    from modelbrowse.tui.options import AppOptions

Guarded = Callable[[argparse.Namespace, Callable[[], int]], int]


def replay(args: argparse.Namespace, options: AppOptions, guarded: Guarded) -> int:
    """`SOURCE --recipe R.json --output OUT.pt`: the edits again, without the app."""
    from modelbrowse.core.saving.names import doubled_extension

    # The app's write dialog asks about such a name; a command cannot, so it refuses.
    doubled = doubled_extension(args.output)
    if doubled is not None:
        return error(f"--output {doubled}; name the file as it should be written")

    def run() -> int:
        from modelbrowse.core.recipe import replay_recipe

        source = options.resolve()
        inputs = {"recipe": Path(args.recipe)}
        if Path(args.source).expanduser().exists():  # not a zoo name
            inputs["source"] = Path(args.source)
        _refuse_replacing(args.output, source.files, inputs)
        if names_folder(args.output):
            from modelbrowse.core.saving.hf_output import replay_to_folder

            output = Path(args.output).expanduser()
            report = replay_to_folder(
                args.recipe,
                source,
                output,
                max_shard_size=options.max_shard_size,
                dtype=args.dtype,
            )
            print(report.summary())
            return 0
        print(replay_recipe(args.recipe, source, args.output, dtype=args.dtype).summary())
        return 0

    return guarded(args, run)


def _refuse_replacing(output: str, files: list[Path], others: dict[str, Path]) -> None:
    """A command cannot ask twice as the app does: an output that would replace what it reads
    is refused in one line."""
    from modelbrowse.core.errors import UsageError
    from modelbrowse.core.saving.names import replaces_an_input

    inputs = others | {f"source file {path.name}": path for path in files}
    problem = replaces_an_input(output, inputs)
    if problem is not None:
        raise UsageError(problem)


def names_folder(output: str) -> bool:
    from modelbrowse.core.saving.names import is_folder_target

    return is_folder_target(output)


def shard_size(text: str | None) -> int | None:
    """`--max-shard-size` in bytes, or None; a bad size is a UsageError naming the flag."""
    from modelbrowse.core.errors import UsageError
    from modelbrowse.core.saving.names import parse_size

    if text is None:
        return None
    try:
        return parse_size(text)
    except UsageError as exc:
        raise UsageError(f"--max-shard-size {exc}") from None


def convert(args: argparse.Namespace, options: AppOptions, guarded: Guarded) -> int:
    """`FOLDER --output HF_FOLDER [--arch CONFIG]`: a Hugging Face or distributed checkpoint
    folder written as a Hugging Face folder, tensor by tensor, without the app."""

    def run() -> int:
        import torch

        from modelbrowse.core.saving.hf_output import convert_folder

        arch = Path(args.arch).expanduser() if args.arch else None
        if arch is not None and arch.is_dir() and (arch / "config.json").is_file():
            options.arch = str(arch / "config.json")  # its config, not its weights
        source = options.resolve()
        inputs = {"source": Path(args.source)}
        if options.arch:
            inputs["architecture"] = Path(options.arch)
        _refuse_replacing(args.output, source.files, inputs)
        output = Path(args.output).expanduser()
        dtype = None if args.dtype is None else getattr(torch, args.dtype)
        report = convert_folder(source, output, max_shard_size=options.max_shard_size, dtype=dtype)
        print(report.summary())
        return 0

    return guarded(args, run)
