"""JPEG thumbnails of indexed images, for the web page; looked up by id, never by path.

Only ids that are live in the served catalog get one, so a client can never make
the server read a file that was not indexed. Files are read and decoded with the
same limits as the build (regular files only, --max-file-mb, --max-pixels), so a
file replaced by a bomb since the build is refused, not decoded. Thumbnails are
cached on disk under the content hash the catalog recorded, so the cache is right
for any index that stored the same bytes, and bounded in size (oldest use first out).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import VisearchError
from common.paths import display_path
from embedder.config import DecodeLimits
from embedder.decode import ImageDecodeError, decode_image
from index.ann.query import InvalidQueryError

if TYPE_CHECKING:
    from index.ann.search import Searcher

log = logging.getLogger("visearch.server")

DEFAULT_SIZE = 256
MIN_SIZE, MAX_SIZE = 16, 1024
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
JPEG_QUALITY = 85


class ThumbnailUnavailableError(VisearchError):
    """The indexed file can no longer be read or decoded within the limits."""


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    path: str  # readable form


def check_size(size: int) -> int:
    size = size or DEFAULT_SIZE
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidQueryError(f"thumbnail size must be between {MIN_SIZE} and {MAX_SIZE}, "
                                f"not {size}")
    return size


def render(data: bytes, size: int, limits: DecodeLimits) -> bytes:
    """Decode with the build's limits (JPEG drafts at a reduced scale) and shrink to fit."""
    image = decode_image(data, limits, draft_size=size)
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class ThumbnailCache:
    """Files named ``<sha256>-<size>.jpg`` under one folder, at most ``max_bytes`` in all.

    A hit touches its file, so eviction drops the least recently used first. Writes
    go through a temporary name, so a reader never sees half a file. A folder that
    cannot be written turns caching off with one warning; thumbnails still work.
    """

    def __init__(self, folder: Path | None, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total = 0
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._total = sum(p.stat().st_size for p in folder.glob("*.jpg"))
            except OSError as exc:
                log.warning("thumbnail cache %s unusable, caching off: %s", folder, exc)
                self.folder = None

    def _file(self, sha256: str, size: int) -> Path | None:
        if self.folder is None or not sha256.isalnum():
            return None
        return self.folder / f"{sha256}-{size}.jpg"

    def get(self, sha256: str, size: int) -> bytes | None:
        path = self._file(sha256, size)
        if path is None:
            return None
        try:
            data = path.read_bytes()
            os.utime(path)
        except OSError:
            return None
        return data

    def put(self, sha256: str, size: int, jpeg: bytes) -> None:
        path = self._file(sha256, size)
        if path is None or len(jpeg) > self.max_bytes:
            return
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # --processes
        try:
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot cache a thumbnail in %s: %s", self.folder, exc)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self._total += len(jpeg)
            if self._total > self.max_bytes:
                self._evict()

    def _evict(self) -> None:
        """Oldest use first, down to 90 % of the bound (so not every write evicts)."""
        assert self.folder is not None
        files = []
        for p in self.folder.glob("*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime_ns, st.st_size, p))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, p in files:
            if total <= self.max_bytes * 0.9:
                break
            p.unlink(missing_ok=True)
            total -= size
        self._total = total

    @property
    def total_bytes(self) -> int:
        return self._total


def thumbnail(searcher: Searcher, row_id: int, size: int, limits: DecodeLimits,
              cache: ThumbnailCache, absolute: bool = False) -> Thumbnail:
    """The thumbnail of a live id of ``searcher``; its path (in errors too) is shown as
    the searcher shows the id's hits (``shown_paths``: below the build root unless
    ``absolute``; on a multi-index server below the root of the id's own shard).

    Raises:
        UnknownIdError: not a live id. InvalidQueryError: size out of range.
        ThumbnailUnavailableError: the file cannot be read or decoded (the reason says why).
    """
    from embedder.files import FileRejectedError, read_file
    from server.like import UnknownIdError

    size = check_size(size)
    record = searcher.catalog.live_record(row_id)
    if record is None:
        raise UnknownIdError(f"id {row_id} is not in the index")
    shown = display_path(searcher.shown_paths([row_id], absolute).get(row_id, record.path))
    cached = cache.get(record.sha256, size)
    if cached is not None:
        return Thumbnail(cached, shown)
    try:
        data = read_file(record.path, limits.max_file_bytes)
        jpeg = render(data, size, limits)
    except (FileRejectedError, ImageDecodeError) as exc:
        raise ThumbnailUnavailableError(f"{shown}: {exc}") from exc
    except OSError as exc:
        raise ThumbnailUnavailableError(f"{shown}: cannot read: {exc.strerror or exc}") \
            from exc
    if hashlib.sha256(data).hexdigest() == record.sha256:  # not a file changed since
        cache.put(record.sha256, size, jpeg)
    return Thumbnail(jpeg, shown)
