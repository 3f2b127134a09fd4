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
    if not structure.untied:
        return None
    tensors = structure.tensors
    deepest = DEFAULT_LIMITS.depth
    floating = {dtype: is_floating(dtype) for dtype in ITEM_SIZES}
    limit = deepest if depth is None else depth
    indents = ["  " * level for level in range(deepest + 1)]
    # The lines shown, in tree order; each count is filled in when its module closes.
    labels = ["(root)"]
    counts = [0]
    # The open modules, root first: path with a trailing dot, line (-1: not shown), parameters.
    open_paths = [""]
    open_lines = [0]
    open_params = [0]
    current = ""  # the innermost open module's path, with a trailing dot ("" for the root)
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
            # Close the modules this key is not in, then open those it is in.
            while current and not key.startswith(current):
                closed = open_params.pop()
                line = open_lines.pop()
                open_paths.pop()
                if line >= 0:
                    counts[line] = closed
                open_params[-1] += closed
                current = open_paths[-1]
            level = len(open_paths)
            while len(current) < cut:
                end = key.index(".", len(current)) + 1
                path = key[: end - 1]
                if path in tensors:
                    return None  # a tensor and the prefix of other keys
                current = key[:end]
                if level <= limit:
                    open_lines.append(len(labels))
                    labels.append(indents[level] + printable(path))
                    counts.append(0)
                else:
                    open_lines.append(-1)
                open_paths.append(current)
                open_params.append(0)
                level += 1
        dtype = record.dtype
        numel = math.prod(record.shape)
        nbytes += numel * ITEM_SIZES[dtype]
        if key[cut:] in BUFFER_NAMES or not floating[dtype]:
            buffers += numel
        else:
            params += numel
            open_params[-1] += numel
    while len(open_paths) > 1:
        closed = open_params.pop()
        line = open_lines.pop()
        open_paths.pop()
        if line >= 0:
            counts[line] = closed
        open_params[-1] += closed
    counts[0] = open_params[0]
    shown = {count: human_count(count) for count in set(counts)}
    classes = ["Weights"] + ["Group"] * (len(labels) - 1)
    totals = Totals(params, params, buffers, nbytes, len(tensors))
    return format_tree(labels, classes, list(map(shown.__getitem__, counts)), [], totals, [])
