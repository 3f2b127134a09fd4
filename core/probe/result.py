"""What a probe found: statistics of each module's output and each parameter's gradient.

Plain records without torch, so that widgets and the text table can take them before torch is
imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelbrowse.core.errors import ModelBrowseError


class ProbeCancelled(ModelBrowseError):
    """The probe was cancelled (its `cancel` event was set) before it finished."""

    def __init__(self) -> None:
        super().__init__("probe cancelled")


class ProbeError(ModelBrowseError):
    """The probe could not run: no input, an input file that cannot be read, a forward or a
    loss that fails. The message is one line."""


@dataclass(frozen=True)
class OutputStats:
    """Statistics of one tensor: a module's output (or, for the first NaN/Inf producer, one of
    its inputs), computed in the hook and kept without the tensor."""

    shape: tuple[int, ...]
    dtype: str
    order: int  # execution order, 0-based: the order in which modules were called (root first)
    mean: float
    std: float
    absmax: float
    zeros: float  # share of exact zeros
    dead: float | None  # share of channels never positive across the batch (ReLU family)
    nan: int
    inf: int
    histogram: tuple[int, ...]  # counts of the finite values over [low, high]
    low: float
    high: float
    calls: int = 1  # how many times the module ran (a shared module runs more than once)

    @property
    def bad(self) -> bool:
        """Whether the tensor holds NaN or Inf."""
        return self.nan > 0 or self.inf > 0


@dataclass(frozen=True)
class GradStats:
    """A parameter's gradient after the backward pass."""

    norm: float
    ratio: float  # grad norm / weight norm (inf for a weight of norm 0 with a gradient)
    weight_norm: float = math.nan


@dataclass(frozen=True)
class ProbeResult:
    """One probe of a model: `outputs` by module path ("" = root, every alias of a shared
    module included), `grads` by parameter path after a backward pass."""

    outputs: dict[str, OutputStats]
    grads: dict[str, GradStats]
    no_grad: tuple[str, ...]  # trainable parameter paths that got no gradient
    first_bad: str | None  # first module (to finish, in execution order) with NaN/Inf output
    first_bad_inputs: tuple[OutputStats, ...]  # stats of that module's tensor inputs
    train: bool
    backward: bool
    loss: float | None
    seconds: float
    modules: tuple[tuple[str, str], ...] = ()  # (path, class name) of every module, tree order
    inputs: str = ""  # the inputs as the table's title names them: `1,3,224,224 (float32)`
    loss_kind: str = ""  # "sum of the output" or "cross-entropy against the target"
    containers: frozenset[str] = frozenset()  # paths of modules without a forward (ModuleList)

    def module_of(self, parameter: str) -> str:
        """The path of the module that holds `parameter` ("" for the root's own)."""
        return parameter.rpartition(".")[0]

    def class_of(self, module: str) -> str:
        """The class name of the module at `module`, or "" when it is not known."""
        return dict(self.modules).get(module, "")
