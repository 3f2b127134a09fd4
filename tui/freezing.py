"""The freeze key: `f` freezes or unfreezes the node at the cursor or every match of the
selection. Where BatchNorm layers are inside, freezing asks whether their running statistics
stop updating too (the layers then stay in eval mode); unfreezing lets them update again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.tui.screens.dialogs import ChoiceDialog

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.selectors import Selection
    from modelbrowse.tui.app import ModelBrowseApp

NORM_ANSWERS = [
    "weights only: BatchNorm running statistics still update in training",
    "weights and running statistics: the layers stay in eval mode, even in model.train()",
]


def _unfreezing(params: int, trainable: int, norms: list[nn.Module]) -> bool:
    """Whether `f` unfreezes: nothing trainable left, or, where there are no parameters at all
    (BatchNorm without affine weights), every layer's statistics already kept."""
    from modelbrowse.core.norm_stats import stats_frozen

    if params:
        return trainable == 0
    return bool(norms) and all(stats_frozen(norm) for norm in norms)


def _set_trainable(index: NodeIndex, path: str, trainable: bool, norm_stats: bool) -> Edit:
    """The edit with what the index already knows: the subtree's parameters (walking 100,000
    modules takes a third of a second) and whether their flags are all alike (reading 120,000
    flags back takes tens of milliseconds)."""
    from modelbrowse.core.edits.freezing import SetTrainable

    params = index.parameters(path) if index.node(path).is_module else None
    alike = index.totals(path).trainable_alike
    return SetTrainable(path, trainable, norm_stats, parameters=params, all_were=alike)


class FreezeActions:
    """Mixed into the App: the `f` key."""

    @property
    def _app(self) -> ModelBrowseApp:
        return self  # type: ignore[return-value]

    def action_freeze(self) -> None:
        app = self._app
        selection = app._selected()
        if selection is not None:
            self._freeze_selection(selection)
            return
        path = app._cursor()
        if path is None or app._weights_only("freezing"):
            return

        def freeze() -> None:
            assert app.index is not None
            totals = app.index.totals(path)
            node = app.index.node(path)
            norms = self._norms_at([path])[path] if node.is_module else []
            if node.is_module and totals.params == 0 and not norms:
                app.notify(f"{path or 'the model'} has no parameters", severity="warning")
                return
            trainable = _unfreezing(totals.params, totals.trainable, norms)

            def make(norm_stats: bool) -> Edit:
                assert app.index is not None
                return _set_trainable(app.index, path, trainable, norm_stats)

            target = path or "the whole model"
            self._with_norm_choice(target, norms, trainable, make, bool(totals.params))

        app._when_real(freeze)

    def _freeze_selection(self, selection: Selection) -> None:
        from modelbrowse.core.index_reading import outermost

        app = self._app
        if app._weights_only("freezing"):
            return

        def freeze() -> None:
            index = app.index
            assert index is not None
            norms_at = self._norms_at(outermost(selection.paths))
            having = [p for p, norms in norms_at.items() if index.totals(p).params or norms]
            norms = [norm for p in having for norm in norms_at[p]]
            params = sum(index.totals(p).params for p in having)
            trainable = _unfreezing(params, sum(index.totals(p).trainable for p in having), norms)
            what = "unfreeze" if trainable else "freeze"

            def make(norm_stats: bool) -> Edit:
                from modelbrowse.core.edits.batch import Batch

                wording = f"{what} weights and running statistics of" if norm_stats else what

                edits: list[Edit] = [
                    _set_trainable(index, p, trainable, norm_stats) for p in having
                ]
                return Batch(selection.pattern, edits, wording)

            if not having:
                app.notify(f"nothing in the selection to {what}", severity="warning")
                return
            target = f"{len(having)} modules matching {selection.pattern}"
            self._with_norm_choice(target, norms, trainable, make, bool(params))

        app._when_real(freeze)

    def _norms_at(self, paths: list[str]) -> dict[str, list[nn.Module]]:
        """The BatchNorm layers keeping running statistics under each path. Only subtrees that
        hold buffers are walked (such a layer has some), so a model of 100,000 modules without
        any costs nothing here."""
        from modelbrowse.core.norm_stats import tracking_batch_norms

        index = self._app.index
        assert index is not None
        return {
            p: tracking_batch_norms(index.node(p).obj) if index.totals(p).buffers else []
            for p in paths
        }

    def _with_norm_choice(
        self,
        target: str,
        norms: list[nn.Module],
        trainable: bool,
        make: Callable[[bool], Edit],
        has_params: bool,
    ) -> None:
        """Apply `make(norm_stats)`: asking first when freezing reaches BatchNorm layers (with
        no weights to freeze, only their statistics are left to); when unfreezing, their
        running statistics are let go where they were kept."""
        from modelbrowse.core.norm_stats import stats_frozen

        app = self._app
        if not has_params and norms and not trainable:
            app._apply(make(True))
            return
        if trainable or not norms:
            app._apply(make(any(stats_frozen(norm) for norm in norms)))
            return

        def answered(choice: int | None) -> None:
            if choice is None:
                app._status("nothing changed")
                return
            app._apply(make(choice == 1))

        count = len(norms)
        question = f"freeze {target}: {count} BatchNorm layer{'s' if count != 1 else ''} inside"
        app.push_screen(ChoiceDialog(question, NORM_ANSWERS), answered)
