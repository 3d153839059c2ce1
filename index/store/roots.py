"""The build root: the folder every indexed file lies under, so paths shown to clients are
relative to it and a client never learns the server's directory layout.

It is the common parent of every build's inputs, kept in the catalog; a later build
under another folder widens it (photos/ and more/ under /data: paths then start with
photos/ or more/). Keys that are not paths (precomputed vectors, upserts) lie under no
root and are shown as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from index.store.catalog import Catalog

ROOT_META_KEY = "root"


def build_root(catalog: Catalog) -> str | None:
    raw = catalog.get_meta(ROOT_META_KEY)
    return None if raw is None else str(json.loads(raw))


def widen_root(catalog: Catalog, paths: Iterable[str]) -> str | None:
    """Record the common parent of the current root and the folders of ``paths``."""
    folders = {os.path.dirname(p) for p in paths}
    current = build_root(catalog)
    if current is not None:
        folders.add(current)
    if not folders:
        return current
    root = os.path.commonpath(sorted(folders))
    if root != current:
        catalog.set_meta(ROOT_META_KEY, json.dumps(root))
    return root


def relative_to(path: str, root: str | None) -> str:
    """``path`` below ``root`` (with / separators kept), or unchanged when outside it."""
    if not root or not path.startswith(root):
        return path
    rest = path[len(root):]
    if root.endswith(os.sep):
        return rest or path
    return rest[1:] if rest.startswith(os.sep) and len(rest) > 1 else path
