"""How many files a decode worker fetches at once, and model batches cut back out of them.

Each message between the main process and a DataLoader worker costs a fixed amount
of CPU on both sides: an index list pickled by a feeder thread, a wake-up, a result
pickled, read and unpickled, and the loader's bookkeeping. For a small model on the
CPU that was a tenth of the main process's time per image at batch 32 (measured in
docs/measurements.md, section 5), so a worker decodes several model batches per
message (a *chunk*), and the main process cuts them back into the same model batches
as before: batch k is always files ``[k * batch_size, (k + 1) * batch_size)``, so the
vectors do not change (the model's output for a row can depend on the batch's size).

Chunks start at one batch (the first batch is not kept waiting), double every
``workers`` chunks up to ``MAX_BATCHES`` batches or ``CHUNK_BYTES`` of pixels, and
shrink again towards the end, so the workers finish together instead of one
decoding a long last chunk while the other idles.
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_BATCHES = 8  # model batches per chunk at most
CHUNK_BYTES = 4 << 20  # pixels per chunk at most (one message), unless one batch is more


def chunk_plan(count: int, batch_size: int, workers: int, image_bytes: int) -> list[list[int]]:
    """Index lists over ``count`` files, each a whole number of model batches (the last
    may be short), in order."""
    if workers < 1:
        return [list(range(s, min(count, s + batch_size))) for s in range(0, count, batch_size)]
    most = max(1, min(MAX_BATCHES, CHUNK_BYTES // max(1, image_bytes * batch_size)))
    chunks: list[list[int]] = []
    start = 0
    while start < count:
        left = -(-(count - start) // batch_size)  # model batches still to fetch
        batches = max(1, min(most, 2 ** (len(chunks) // workers), left // (2 * workers)))
        end = min(count, start + batches * batch_size)
        chunks.append(list(range(start, end)))
        start = end
    return chunks


def cut(errors: list[str | None], batch_size: int) -> Iterator[tuple[slice, slice]]:
    """For one chunk (which starts on a model batch) with these per-file errors: each
    model batch as (slice of the chunk's files, slice of its pixel rows; a row per file
    without error)."""
    row = 0
    for start in range(0, len(errors), batch_size):
        files = slice(start, start + batch_size)
        ok = sum(1 for e in errors[files] if e is None)
        yield files, slice(row, row + ok)
        row += ok
