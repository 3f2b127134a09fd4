"""`--trust-pickle`: where a pickled model's classes are imported from, and what to do when
they cannot be.

Only reached when the user asked for the file's code to run; a pickle then imports the modules
it names, found as `python` run in the file's folder or in the working directory finds them.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

_MAIN_ATTRIBUTE = re.compile(r"Can't get attribute '([^']+)' on <module '__main__'")


@contextlib.contextmanager
def imports_beside(path: Path) -> Iterator[None]:
    """While it lasts, modules in `path`'s folder and in the working directory are importable
    first, as for `python` started there (`torch.save(model)` from `convbn.py` pickles
    `convbn.ConvBN`)."""
    folders = dict.fromkeys(str(place) for place in (path.resolve().parent, Path.cwd()))
    added = [folder for folder in folders if folder not in sys.path]
    sys.path[0:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def missing_class_problem(exc: BaseException, path: Path) -> str | None:
    """One line on how to make a pickle's classes importable, when `exc` says they are not;
    None for any other error."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return (
            f"cannot load {path}: its classes are in the module '{exc.name}', which is neither "
            f"beside the file nor in the working directory ({Path.cwd()}): run modelbrowse "
            f"from the folder that holds {top}.py (or {top}/), or add that folder to PYTHONPATH"
        )
    found = _MAIN_ATTRIBUTE.search(str(exc))
    if isinstance(exc, AttributeError) and found:
        name = found.group(1)
        return (
            f"cannot load {path}: its class {name} was pickled from a script run directly "
            f"(__main__.{name}), which no other program can import: in that script save "
            f"model.state_dict() and open that file with --arch SCRIPT.py:{name}"
        )
    return None
