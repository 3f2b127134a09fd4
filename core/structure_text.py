"""`--print` of a weight file's keys without a node index: one pass over the sorted keys.

`--print` shows modules and totals only, so a file of a million keys needs neither a node per
tensor nor one per module: the keys, sorted, nest as a stack of open prefixes, each module's
line is made when it opens and its count filled in when it closes. The lines are those
`core.text_tree.render_tree_text` draws from a `core.structure_index.StructureIndex` of the
same structure (the same modules, order, classes and totals); whatever that index would refuse,
or find tied, is answered None here, and the index decides.
"""

from __future__ import annotations

import math
from itertools import compress

from modelbrowse.core.nodes import Totals
from modelbrowse.core.reading.limits import DEFAULT_LIMITS
from modelbrowse.core.reading.records import ITEM_SIZES
from modelbrowse.core.structure import Structure
from modelbrowse.core.structure_index import BUFFER_NAMES, is_floating
from modelbrowse.core.text_tree import format_tree
from modelbrowse.core.units import human_count, printable


def structure_tree_text(structure: Structure, depth: int | None = None) -> str | None:
    """The module tree and totals `render_tree_text` prints for this structure's index, or
    None when only the index can tell them: keys out of order, tensors that may be tied, or
    keys the index refuses."""
    found = structure.quantized_keys
    if not structure.untied or (found is not None and found.owner):
        return None  # tied tensors, or pieces shown as one weight: the index tells
    tensors = structure.tensors
    deepest = DEFAULT_LIMITS.depth
    floating = {dtype: is_floating(dtype) for dtype in ITEM_SIZES}
    indents = ["  " * level for level in range(deepest + 1)]
    buffer_ends = tuple(f".{name}" for name in BUFFER_NAMES)
    # Every module, in tree order: its line and depth, and its count, filled in when it closes.
    labels = ["(root)"]
    levels = [0]
    counts = [0]
    # The open modules, root first: path with a trailing dot, and the line of each.
    open_paths = [""]
    open_lines = [0]
    current = ""  # the innermost open module's path, with a trailing dot ("" for the root)
    inner = 0  # its line
    previous = ""
    params = buffers = nbytes = 0
    for key, record in tensors.items():
        if key <= previous or key.count(".") >= deepest or key[0] == "." or key[-1] == ".":
            return None  # out of order, or the index refuses it (empty keys sort first)
        if ".." in key:
            return None
        previous = key
        cut = key.rfind(".") + 1
        if cut != len(current) or not key.startswith(current):
            # Close the modules this key is not in (their counts go to their parents), then
            # open those it is in.
            while current and not key.startswith(current):
                open_paths.pop()
                open_lines.pop()
                outer = open_lines[-1]
                counts[outer] += counts[inner]
                current = open_paths[-1]
                inner = outer
            level = len(open_paths)
            while len(current) < cut:
                end = key.index(".", len(current)) + 1
                path = key[: end - 1]
                if path in tensors:
                    return None  # a tensor and the prefix of other keys
                current = key[:end]
                inner = len(labels)
                labels.append(
                    indents[level]
                    + (path if len(path) <= 200 and path.isprintable() else printable(path))
                )
                levels.append(level)
                counts.append(0)
                open_paths.append(current)
                open_lines.append(inner)
                level += 1
        dtype = record.dtype
        quantization = record.quantization
        if quantization is None:
            numel = math.prod(record.shape)
            nbytes += numel * ITEM_SIZES[dtype]
        else:  # a quantized weight: its logical count, the bytes it is stored in
            numel = quantization.numel
            nbytes += record.nbytes
            dtype = "float32"
        if not floating[dtype] or (key.endswith(buffer_ends) if cut else key in BUFFER_NAMES):
            buffers += numel
        else:
            params += numel
            counts[inner] += numel
    while len(open_lines) > 1:
        open_lines.pop()
        counts[open_lines[-1]] += counts[inner]
        inner = open_lines[-1]
    if depth is not None:
        shown_lines = [level <= depth for level in levels]
        labels = list(compress(labels, shown_lines))
        counts = list(compress(counts, shown_lines))
    shown = {count: human_count(count) for count in set(counts)}
    classes = ["Weights"] + ["Group"] * (len(labels) - 1)
    totals = Totals(params, params, buffers, nbytes, len(tensors))
    return format_tree(labels, classes, list(map(shown.__getitem__, counts)), [], totals, [])
