"""The `modelbrowse` command: parse the arguments, then run the app or print the tree.

Imports nothing heavy at module level: `--help` and `--version` answer without torch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.tui.keymap import Config
    from modelbrowse.tui.options import AppOptions
    from modelbrowse.tui.splash import Splash

from modelbrowse.tui.console import error, say, write
from modelbrowse.tui.parser import build_parser
from modelbrowse.tui.writing import names_folder, shard_size


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = " ".join(sys.argv[1:] if argv is None else argv)
    if args.depth is not None and args.depth < 0:
        parser.error("--depth must be 0 or more")
    merging = args.merge is not None
    if args.output is not None and args.recipe is None and not merging:  # noqa: SIM102
        if not names_folder(args.output):
            parser.error(
                "--output goes with --recipe or --merge (or names a folder for a Hugging Face "
                "folder)"
            )
    converting = args.output is not None and args.recipe is None and not merging
    if converting and (args.print_tree or args.meta or args.diff is not None):
        parser.error("--output writes a Hugging Face folder; leave out --print, --meta, --diff")
    if args.recipe is not None and args.output is None and (args.print_tree or args.diff):
        parser.error(
            "--recipe opens the app with its edits (or writes them with --output); "
            "leave out --print and --diff"
        )
    if args.select is not None and not args.print_tree:
        parser.error("--select goes with --print (in the app, * opens the selector)")
    if args.detail is not None and not args.print_tree:
        parser.error("--detail goes with --print (in the app, : goes to a path)")
    if args.detail is not None and (args.select is not None or args.depth is not None):
        parser.error("--detail shows one node: leave out --select and --depth")
    if args.summary and not args.print_tree:
        parser.error("--summary goes with --print (in the app, s shows the summary)")
    if args.summary and (args.select is not None or args.detail is not None):
        parser.error("--summary shows the whole model: leave out --select and --detail")
    from modelbrowse.core.arguments import example_input
    from modelbrowse.core.errors import UsageError

    try:  # read before anything opens: a typo is one line at once
        example_input(args.input_shape, args.input_dtype, ())
        shard_size(args.max_shard_size)
    except UsageError as exc:
        return error(str(exc))
    if args.dtype is not None:
        if args.output is None:
            parser.error("--dtype goes with --output (in the app, w chooses the dtype)")
        from modelbrowse.core.arguments import parse_dtype

        try:
            args.dtype = parse_dtype(args.dtype)
        except UsageError as exc:
            return error(str(exc))
    if args.merge is not None:
        from modelbrowse.tui.merging import merge_command, usage_problem

        problem = usage_problem(args)
        if problem is not None:
            parser.error(problem)
        return merge_command(args, _guarded)
    if args.meta and (args.recipe is not None or args.diff is not None):
        parser.error(
            "--meta has no values to compare or write; leave it out with --recipe or --diff"
        )
    if args.port is not None and not args.serve:
        parser.error("--port goes with --serve")
    if args.serve and (args.print_tree or args.output is not None):
        parser.error("--serve runs the app; leave out --print and --output")
    if args.json and not args.check:
        parser.error("--json goes with --check")
    if args.against is not None and not args.check:
        parser.error("--against goes with --check")
    from modelbrowse.tui.probing import probe_usage_problem

    problem = probe_usage_problem(args)
    if problem is not None:
        return error(problem)  # one line, status 2
    if args.probe:
        from modelbrowse.tui.probing import probe

        return probe(args, _options(args), _guarded)
    if args.check:
        from modelbrowse.tui.checking import check, usage_problem

        problem = usage_problem(args)
        if problem is not None:
            parser.error(problem)
        # A check in CI tells a source it could not read (2) from one with problems (1).
        return check(args, _options(args), lambda a, w: _guarded(a, w, unexpected_status=2))
    if args.recipe is not None and args.output is not None:
        from modelbrowse.tui.writing import replay

        return replay(args, _options(args), _guarded)
    if args.output is not None:
        from modelbrowse.tui.writing import convert

        return convert(args, _options(args), _guarded)
    if args.print_tree and args.diff is not None:
        return _print_diff(args)
    if args.print_tree:
        return _print_tree(args)
    if args.recipe is not None and not os.path.isfile(args.recipe):
        return error(f"no recipe at {args.recipe}")
    from modelbrowse.tui.keymap import read_config

    try:  # a bad config is one line, whether or not there is a terminal
        config = read_config()
    except UsageError as exc:
        return error(str(exc))
    if args.serve:
        return _serve(args, sys.argv[1:] if argv is None else argv)
    if not args.served and not (
        sys.stdin and sys.stdout and sys.stdin.isatty() and sys.stdout.isatty()
    ):
        return error(
            "standard input or output is not a terminal, so the app cannot start; "
            "use --print for the tree as text, --serve for a browser (or ssh -t for a terminal)"
        )
    return _run_app(args, config)


def _guarded(args: argparse.Namespace, work: Callable[[], int], unexpected_status: int = 1) -> int:
    """Run `work`; any error is one line on stderr and status 2 (a traceback with --debug),
    an unexpected one `unexpected_status`."""
    from modelbrowse.core.errors import ModelBrowseError

    try:
        return work()
    except ModelBrowseError as exc:
        if args.debug:
            traceback.print_exc()
        return error(str(exc))
    except Exception as exc:
        from modelbrowse.core.error_log import one_line, record_error, where_logged

        if args.debug:
            traceback.print_exc()
        log = record_error(exc, context=f"modelbrowse {args.command_line}")
        message = f"unexpected error: {one_line(exc)} ({where_logged(log)})"
        return error(message, status=unexpected_status)


def _options(args: argparse.Namespace) -> AppOptions:
    from modelbrowse.tui.options import AppOptions

    return AppOptions(
        source=args.source,
        kw=list(args.kw),
        weights=args.weights,
        input_shape=args.input_shape,
        input_dtype=args.input_dtype,
        input_file=args.input,
        target_file=args.target,
        debug=args.debug,
        seed=args.seed,
        arch=args.arch,
        key=args.key,
        keep_prefix=args.keep_prefix,
        strip_prefix=args.strip_prefix,
        trust_pickle=args.trust_pickle,
        device=args.device,
        diff=args.diff,
        meta=args.meta,
        keys_only=args.keys_only,
        recipe=args.recipe if args.output is None else None,
        max_shard_size=shard_size(args.max_shard_size),
    )


def _print_tree(args: argparse.Namespace) -> int:
    def print_tree() -> int:
        full_open = args.detail is not None or args.summary
        texts = None if full_open else _print_from_structure(args)
        if texts is not None:
            for text in texts:  # written apart: a million lines are not copied again
                write(text)
            return 0
        from modelbrowse.core.index import NodeIndex
        from modelbrowse.core.text_tree import render_source_info, render_tree_text

        options = _options(args)
        source = options.resolve()
        if args.detail is not None:
            from modelbrowse.tui.print_detail import detail_text

            write(detail_text(source, args.detail, args.seed, args.meta))
            return 0
        if args.summary:
            from modelbrowse.core.arguments import example_input
            from modelbrowse.core.model_summary import source_summary

            example = example_input(args.input_shape, args.input_dtype, source.default_input)
            write(source_summary(source, example))
            return 0
        model, _ = source.build_structure()
        if args.select is not None:
            from modelbrowse.core.text_tree import render_selection

            write(render_selection(NodeIndex(model), args.select))
            return 0
        tree = render_tree_text(NodeIndex(model), depth=args.depth)
        write(render_source_info(source) + tree + source.print_text)
        return 0

    return _guarded(args, print_tree)


def _print_from_structure(args: argparse.Namespace) -> list[str] | None:
    """`--print` of a weight file from its bytes alone, without torch: the text the full open
    prints, or None when only the full open can print it (its rows, or its classes, differ)."""
    from modelbrowse.core.index_reading import collector_paused
    from modelbrowse.core.structure_index import preview_index
    from modelbrowse.core.structure_text import structure_tree_text
    from modelbrowse.core.text_tree import render_rows, render_selection, render_tree_text

    if args.select is not None and args.select.strip() == "all-linear":
        return None  # told from the modules' classes, which only the full open has
    # Millions of records and nodes, none in a cycle: the collector would only walk them.
    with collector_paused():
        structure = _options(args).read_keys()
        if structure is None or structure.partial:
            return None
        if args.select is None:
            text = structure_tree_text(structure, args.depth)
            if text is not None:  # modules and totals, without an index of every key
                return [render_rows(structure.rows), text]
        index = preview_index(structure)
        if index is None:
            return None
        if args.select is not None:
            return [render_selection(index, args.select)]
        return [render_rows(structure.rows), render_tree_text(index, depth=args.depth)]


def _print_diff(args: argparse.Namespace) -> int:
    """`A --diff B --print`: the differing keys as text; 0 when equal, 1 when not, like diff."""

    def print_diff() -> int:
        from modelbrowse.core.diff import diff_states, diff_text, is_equal, states_for_diff

        options = _options(args)
        seed = 0 if args.seed is None else args.seed
        left, right = states_for_diff(options.resolve(), options.resolve(args.diff), seed)
        diffs = diff_states(left, right)
        write(diff_text(diffs, args.source, args.diff))
        return 0 if is_equal(diffs) else 1

    return _guarded(args, print_diff)


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`--serve`: the source is checked here once, so that a mistake is one line in the
    terminal rather than a page that closes."""

    def serve() -> int:
        from modelbrowse.tui.serving import DEFAULT_PORT, check_port, serve

        port = DEFAULT_PORT if args.port is None else args.port
        check_port(port)
        _options(args).resolve()
        return serve(argv, port, args.source)

    return _guarded(args, serve)


def _run_app(args: argparse.Namespace, config: Config) -> int:
    options = _options(args)
    options.keymap = config.keymap
    options.theme = config.theme
    splash = None if args.served else _paint_splash(options)
    try:
        from modelbrowse.tui.app import ModelBrowseApp

        driver_class = None
        if splash is not None:
            from modelbrowse.tui.splash_driver import driver_after

            driver_class = driver_after(splash)
        app = ModelBrowseApp(options, driver_class=driver_class)
        app.run()
    except KeyboardInterrupt:  # ctrl+c before the app took the keys
        return 130
    finally:
        if splash is not None:
            splash.close()
    status = app.return_code or 0
    if app.error_message:
        return error(app.error_message, status=status or 2)
    return status


def _paint_splash(options: AppOptions) -> Splash | None:
    """The app's first frame, painted before Textual is imported, with the default looks."""
    if options.keymap or options.theme not in (None, "textual-dark"):
        return None
    from modelbrowse.tui.splash import paint

    return paint(options.label)


def run() -> None:
    """Console-script entry point."""
    status = main()
    # A save still writing (the app was quit or stopped by a signal meanwhile) finishes first.
    from modelbrowse.tui.inflight import finish_saves

    finish_saves(say)
    # Everything is done: the terminal is restored and saved files are fsynced and renamed
    # before a save reports. The interpreter's teardown (unloading torch, waiting for a worker
    # still initialising weights) would add 0.3-0.7 s to every quit, so leave without it.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # None: started closed
            stream.flush()
    os._exit(status)
