"""Selectors: which modules a pattern hits, as fine-tuning setups name them.

- a glob over qualified paths: `features.*`, `*.attn.qkv` (`*` crosses dots);
- a plain name, as PEFT's `target_modules` matches one: the path itself or its last parts
  (`qkv` hits `blocks.0.attn.qkv`);
- `re:PATTERN`, a regular expression over the whole path (PEFT's regex form);
- `cls:NAME`, every module of a class (`cls:Linear`, `cls:BatchNorm2d`);
- `all-linear`: every `nn.Linear` but the output layer (PEFT's shorthand): the model's output
  embeddings where it has them (transformers), else its last Linear.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.index_reading import outermost
from modelbrowse.core.nodes import NodeKind

if TYPE_CHECKING:  # torch-free: `--print --select` on a weight file's keys never imports torch
    from torch import nn

    from modelbrowse.core.index_reading import IndexReading as NodeIndex


class SelectorError(ModelBrowseError):
    """A selector that cannot be read (a bad regular expression, an empty pattern)."""


@dataclass(frozen=True)
class Selection:
    pattern: str
    paths: list[str]  # the modules matched, in tree order
    params: int  # parameters under them, each counted once

    def summary(self) -> str:
        modules = f"{len(self.paths):,} module{'s' if len(self.paths) != 1 else ''}"
        return f"{self.pattern}: {modules}, {self.params:,} parameters"

    def target_modules(self, index: NodeIndex) -> list[str]:
        """The matches as a PEFT `target_modules` list: the last parts of their names
        (`["q_proj", "v_proj"]`) when those hit exactly these modules, else the full paths."""
        names = sorted({path.rpartition(".")[2] for path in self.paths})
        wanted = set(names)  # a name has no dot: `p == n or p.endswith("." + n)` is its last part
        modules = [p for p in index.paths() if p and index.node(p).is_module]
        hits = [p for p in modules if p.rpartition(".")[2] in wanted]
        return names if hits == self.paths else list(self.paths)


def select(index: NodeIndex, pattern: str) -> Selection:
    """The modules of `index` that `pattern` matches."""
    text = pattern.strip()
    if not text:
        raise SelectorError("an empty selector: try features.*, re:.*attn.*, cls:Linear")
    match = _matcher(index, text)
    paths = [p for p in index.paths() if index.node(p).is_module and match(p)]
    return Selection(text, paths, _parameters_under(index, paths))


def _matcher(index: NodeIndex, text: str) -> Callable[[str], bool]:
    if text.startswith("re:"):
        try:
            regex = re.compile(text[3:])
        except re.error as exc:
            raise SelectorError(f"not a regular expression: {exc}") from None
        return lambda path: regex.fullmatch(path) is not None
    if text.startswith("cls:"):
        name = text[4:].strip().removeprefix("nn.").removeprefix("torch.nn.")
        return lambda path: index.node(path).type_name == name
    if text == "all-linear":
        from torch import nn

        from modelbrowse.core.index import NodeIndex as BuiltIndex

        # A weight file's keys have no Linear: nothing to leave out, nothing matches.
        excluded = _output_layers(index.model) if isinstance(index, BuiltIndex) else set()
        return lambda path: isinstance(index.node(path).obj, nn.Linear) and path not in excluded
    if any(c in text for c in "*?["):
        return lambda path: fnmatch.fnmatchcase(path, text)
    return lambda path: path == text or path.endswith("." + text)


def _output_layers(model: nn.Module) -> set[str]:
    """The output layer `all-linear` leaves out: what get_output_embeddings() returns (a
    transformers model), else the model's last Linear."""
    from torch import nn

    output = getattr(model, "get_output_embeddings", lambda: None)()
    names = dict(model.named_modules())
    if isinstance(output, nn.Module):
        return {name for name, module in names.items() if module is output}
    linears = [name for name, module in names.items() if isinstance(module, nn.Linear)]
    return {linears[-1]} if linears else set()


def _parameters_under(index: NodeIndex, paths: list[str]) -> int:
    seen: set[int] = set()
    total = 0
    for path in outermost(paths):  # a match inside another adds no parameter of its own
        for below in index.subtree(path):
            node = index.node(below)
            if node.kind is NodeKind.PARAMETER and id(node.obj) not in seen:
                seen.add(id(node.obj))
                total += node.obj.numel()
    return total
