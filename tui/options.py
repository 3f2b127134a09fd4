"""What the command line asked for, and the source it names; imports torch only when resolving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.structure import Structure
    from modelbrowse.core.structure_index import StructureIndex


@dataclass
class AppOptions:
    """The command line's choices, shared by the app, `--print` and `--recipe`."""

    source: str
    kw: list[str] = field(default_factory=list)
    weights: str | None = None
    input_shape: str | None = None
    input_dtype: str | None = None  # a dtype word (long) for inputs without their own
    input_file: str | None = None  # `--input FILE`: what the probe (p) feeds the model
    target_file: str | None = None  # `--target FILE`: the probe's cross-entropy target
    debug: bool = False
    seed: int | None = None
    arch: str | None = None
    key: str | None = None
    keep_prefix: bool = False
    strip_prefix: str | None = None
    trust_pickle: bool = False
    device: str | None = None
    diff: str | None = None
    keys_only: bool = False
    meta: bool = False  # never create tensor values: structure and shapes only
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys, from the config
    theme: str | None = None  # a Textual theme, from the config
    recipe: str | None = None  # a recipe whose edits the app applies once the weights are real
    max_shard_size: int | None = None  # bytes, for a Hugging Face folder written by `w`

    @property
    def label(self) -> str:
        """What the header names: the source, or both sides of `--diff`."""
        return self.source if self.diff is None else f"{self.source} vs {self.diff}"

    def resolve(self, spec: str | None = None) -> Source:
        """The model source these options name (files are opened: headers only); `spec` in
        place of the first source (the other side of `--diff`)."""
        from modelbrowse.core.arguments import parse_kwargs
        from modelbrowse.core.sources.base import resolve_source
        from modelbrowse.core.sources.files import CheckpointOptions

        checkpoint = CheckpointOptions(
            key=self.key,
            keep_prefix=self.keep_prefix,
            strip_prefix=self.strip_prefix,
            trust_pickle=self.trust_pickle,
            device=self.device,
            keys_only=self.keys_only,
        )
        return resolve_source(
            spec or self.source,
            parse_kwargs(self.kw),
            self.weights,
            arch=self.arch,
            checkpoint=checkpoint,
        )

    def read_structure(self) -> StructureIndex | None:
        """The weight file's tree read from its bytes alone (no torch), or None when only the
        full open can show it: an architecture, a comparison, a recipe, `--meta`, a trusted
        pickle, a device, `--kw`, `--weights`, or a source the reading layer does not cover."""
        from modelbrowse.core.structure_index import preview_index

        structure = self.read_keys()
        return preview_index(structure) if structure is not None else None

    def read_keys(self) -> Structure | None:
        """The keys and records `read_structure` indexes, or None where it answers None before
        indexing."""
        from modelbrowse.core.structure import read_structure

        full_open_only = bool(
            self.arch
            or self.diff is not None
            or self.recipe
            or self.meta
            or self.trust_pickle
            or self.device not in (None, "cpu")
            or self.kw
            or self.weights
        )
        return read_structure(
            self.source,
            key=self.key,
            keep_prefix=self.keep_prefix,
            strip_prefix=self.strip_prefix,
            keys_only=self.keys_only,
            full_open_only=full_open_only,
        )
