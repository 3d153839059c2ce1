"""List the image files a build should consider: directories, files and ``@list.txt`` files."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import VisearchError
from common.paths import display_path, not_regular
from index.store.catalog import ImageRecord

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico",
})


class InputError(VisearchError, ValueError):
    """An input given on the command line does not exist or cannot be read."""


@dataclass
class Listing:
    """The files found, in a stable order, and what was passed over on the way."""

    files: list[ImageRecord] = field(default_factory=list)
    ignored: int = 0  # files without an image extension
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) unusable


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(inputs: Sequence[str]) -> Listing:
    """Expand ``inputs`` into image files, each path once.

    Args:
        inputs: directories (walked recursively, symlinks followed, loops cut),
            image files, or ``@FILE`` naming a text file with one path per line
            (relative lines are relative to the current directory; ``#`` starts
            a comment line).

    Raises:
        InputError: an input itself is missing or unreadable; no files are listed then.
    """
    listing = Listing()
    seen: set[str] = set()
    for raw in inputs:
        _check_exists(raw)
    for raw in inputs:
        for path, reason in _expand(raw, listing):
            if path in seen:
                continue
            seen.add(path)
            if reason:
                listing.missing.append((path, reason))
                continue
            try:
                st = os.stat(path)
            except OSError as exc:
                listing.missing.append((path, f"cannot stat: {exc.strerror}"))
                continue
            problem = not_regular(st.st_mode)  # a FIFO, a link to /dev/zero...
            if problem:
                listing.missing.append((path, problem))
                continue
            listing.files.append(ImageRecord(path, st.st_size, st.st_mtime_ns))
    return listing


def _check_exists(raw: str) -> None:
    target = raw[1:] if raw.startswith("@") else raw
    if not os.path.exists(target):
        kind = "list file" if raw.startswith("@") else "input"
        raise InputError(f"{kind} does not exist: {target}")
    if not os.access(target, os.R_OK):
        raise InputError(f"input is not readable: {target}")


def _expand(raw: str, listing: Listing) -> Iterator[tuple[str, str | None]]:
    """(absolute path, reason it cannot be used or None)."""
    if raw.startswith("@"):
        yield from _from_list_file(Path(raw[1:]), listing)
    elif os.path.isdir(raw):
        yield from _walk(raw, listing)
    else:
        yield os.path.abspath(raw), None


def _from_list_file(list_file: Path, listing: Listing) -> Iterator[tuple[str, str | None]]:
    """Lines are decoded as file names are, so a name that is not UTF-8 can be listed."""
    try:
        lines = list_file.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read list file {list_file}: {exc}") from exc
    for line in lines:
        entry = os.fsdecode(line.strip())
        if not entry or entry.startswith("#"):
            continue
        if os.path.isdir(entry):
            yield from _walk(entry, listing)
        elif os.path.lexists(entry):  # list_images says why it cannot be read, if it cannot
            yield os.path.abspath(entry), None
        else:
            yield (os.path.abspath(entry),
                   f"listed in {display_path(str(list_file))} but does not exist")


def _walk(root: str, listing: Listing) -> Iterator[tuple[str, str | None]]:
    """Image files under ``root`` in sorted order, each real directory entered once, and
    each directory that cannot be read with its reason (it used to vanish silently)."""
    visited: set[tuple[int, int]] = set()
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root), onerror=unreadable.append,
                                                followlinks=True):
        yield from _directory_errors(unreadable)
        try:
            st = os.stat(dirpath)
        except OSError as exc:  # removed or replaced while we walked
            yield dirpath, f"cannot read directory: {exc.strerror or exc}"
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:  # a symlink loop or a second link to the same tree
            dirnames[:] = []
            continue
        visited.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            if is_image_name(name):
                yield os.path.join(dirpath, name), None
            else:
                listing.ignored += 1
    yield from _directory_errors(unreadable)


def _directory_errors(errors: list[OSError]) -> Iterator[tuple[str, str]]:
    """What os.walk reported since the last call, as (directory, reason); then forgotten."""
    for exc in errors:
        yield str(exc.filename), f"cannot read directory: {exc.strerror or exc}"
    errors.clear()


def input_roots(inputs: Sequence[str]) -> list[str]:
    """The absolute paths ``inputs`` cover: each directory or file given, and each entry of
    an ``@FILE``. An indexed file under one of them that no longer exists has vanished."""
    roots: list[str] = []
    for raw in inputs:
        if not raw.startswith("@"):
            roots.append(os.path.abspath(raw))
            continue
        try:
            lines = Path(raw[1:]).read_bytes().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read list file {raw[1:]}: {exc}") from exc
        roots.extend(os.path.abspath(os.fsdecode(line.strip())) for line in lines
                     if line.strip() and not line.strip().startswith(b"#"))
    return roots


def under(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies inside one of them."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
