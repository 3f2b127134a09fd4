"""`hf:ORG/NAME[@REVISION]`: a model from the local Hugging Face cache, never the network.

The cache's layout is read directly (`models--ORG--NAME/refs/REVISION` names a commit,
`snapshots/COMMIT/` holds the files), so this works offline and without `huggingface_hub`. The
snapshot then opens as any Hugging Face folder does (see `checkpoint_folders`).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from modelbrowse.core.errors import SourceError

PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache() -> Path:
    """Where Hugging Face keeps downloads: `$HF_HUB_CACHE`, `$HF_HOME/hub`, or the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


def cached_repos() -> list[str]:
    """The model repositories in the cache: `ORG/NAME`."""
    try:
        folders = [p.name for p in hub_cache().iterdir() if p.name.startswith("models--")]
    except OSError:
        return []
    return sorted(f.removeprefix("models--").replace("--", "/") for f in folders)


def hub_suggestion(spec: str) -> str | None:
    """`hf:ORG/NAME` for a plain name a cached repository has (`gpt2`, `tiny-llama`)."""
    lowered = spec.lower()
    for repo in cached_repos():
        if repo.lower() == lowered or repo.lower().rpartition("/")[2] == lowered:
            return PREFIX + repo
    return None


def resolve_hub_snapshot(spec: str) -> Path:
    """The cached snapshot folder of `hf:ORG/NAME[@REVISION]`; one line if it is not there."""
    repo, _, revision = spec.removeprefix(PREFIX).strip().partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise SourceError(f"{spec!r} is not a Hugging Face model name: use hf:ORG/NAME[@REVISION]")
    revision = revision or "main"
    folder = hub_cache() / f"models--{repo.replace('/', '--')}"
    if not folder.is_dir():
        close = difflib.get_close_matches(repo, cached_repos(), n=3, cutoff=0.6)
        hint = f"; cached: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise SourceError(
            f"{PREFIX}{repo} is not in the Hugging Face cache ({folder} does not exist); "
            f"download it first, e.g. `huggingface-cli download {repo}`{hint}"
        )
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif _COMMIT.match(revision):
        commit = revision
    else:
        known = sorted(p.name for p in (folder / "refs").glob("*")) or ["none"]
        raise SourceError(
            f"{PREFIX}{repo} has no revision {revision!r} in the cache ({ref} does not exist; "
            f"cached: {', '.join(known)})"
        )
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        raise SourceError(f"{PREFIX}{repo}@{revision} is not in the cache ({snapshot} is missing)")
    config = snapshot / "config.json"
    if not config.exists() and not (snapshot / "adapter_config.json").exists():
        raise SourceError(f"{PREFIX}{repo}: the cached snapshot has no config.json ({config})")
    missing = [p.name for p in snapshot.iterdir() if p.is_symlink() and not p.exists()]
    if missing:
        raise SourceError(
            f"{PREFIX}{repo}: {missing[0]} is only partly downloaded (its link in {snapshot} "
            "points to a missing file); download it again"
        )
    return snapshot
