"""`--print`'s one pass over sorted keys: the text the structure's node index renders."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelbrowse.core.reading.records import StorageRef, TensorRecord
from modelbrowse.core.structure import Structure
from modelbrowse.core.structure_index import preview_index
from modelbrowse.core.structure_text import structure_tree_text
from modelbrowse.core.text_tree import render_tree_text

# Module names of characters that sort before and after the dot, so that sorted keys interleave
# modules; a tensor named `a` may also be a module's name (which the index refuses).
MODULES = st.lists(st.text(alphabet="ab0-!\t", min_size=1, max_size=3), max_size=3)
LEAVES = st.sampled_from(["weight", "bias", "running_mean", "num_batches_tracked", "a"])
KEYS = st.lists(
    st.tuples(MODULES, LEAVES).map(lambda m: ".".join([*m[0], m[1]])),
    min_size=1,
    max_size=30,
    unique=True,
)
DTYPES = st.sampled_from(["float32", "float16", "int64", "bool"])


def structure(keys: list[str], dtypes: list[str], untied: bool = True) -> Structure:
    """A structure of one-row tensors (key i holds i + 1 elements), in the keys' order."""
    tensors = {}
    for i, (key, dtype) in enumerate(zip(keys, dtypes, strict=True)):
        storage = StorageRef("file", 1000 * i, 8 * (i + 1), key)
        tensors[key] = TensorRecord(dtype, (i + 1,), (1,), 0, storage)
    return Structure("safetensors", tensors, untied=untied)


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, data=st.data(), depth=st.sampled_from([None, 0, 1, 2]))
def test_the_one_pass_prints_what_the_index_renders(
    keys: list[str], data: st.DataObject, depth: int | None
) -> None:
    keys = sorted(keys)
    dtypes = [data.draw(DTYPES) for _ in keys]
    index = preview_index(structure(keys, dtypes))
    text = structure_tree_text(structure(keys, dtypes), depth)
    if index is None:  # keys the index refuses: a tensor and a module of one name
        assert text is None
    else:
        assert text == render_tree_text(index, depth=depth)


def test_a_few_keys_print_their_modules_counts_and_totals() -> None:
    keys = ["a-b.w", "a.b.running_mean", "a.b.w", "a.c.w", "a0.w", "top"]
    dtypes = ["float32", "float32", "float32", "int64", "float16", "float32"]
    text = structure_tree_text(structure(keys, dtypes))
    assert text == (
        "(root)   Weights  15\n"
        "  a-b    Group     1\n"
        "  a      Group     3\n"
        "    a.b  Group     3\n"
        "    a.c  Group     0\n"
        "  a0     Group     5\n"
        "\n"
        "Total params: 15  trainable: 15  frozen: 0  buffers: 6  size: 90 B\n"
    )
    index = preview_index(structure(keys, dtypes))
    assert index is not None
    assert text == render_tree_text(index)


def test_keys_out_of_order_or_tied_are_left_to_the_index() -> None:
    keys, dtypes = ["b.w", "a.w"], ["float32", "float32"]
    assert structure_tree_text(structure(keys, dtypes)) is None
    assert structure_tree_text(structure(sorted(keys), dtypes, untied=False)) is None
    assert structure_tree_text(structure(sorted(keys), dtypes)) is not None


def test_a_tensor_named_as_a_module_is_left_to_the_index() -> None:
    keys, dtypes = ["a", "a!", "a.w"], ["float32"] * 3
    assert preview_index(structure(keys, dtypes)) is None
    assert structure_tree_text(structure(keys, dtypes)) is None


def test_keys_the_index_refuses_are_left_to_it() -> None:
    for bad in ["a..w", ".a.w", "a.w.", "a." * 2000 + "w"]:
        keys = sorted(["a.b.w", bad])
        assert preview_index(structure(keys, ["float32"] * 2)) is None
        assert structure_tree_text(structure(keys, ["float32"] * 2)) is None
