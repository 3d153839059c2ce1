"""Workers decode several model batches per message (embedder.chunks); the model still sees
the same batches, and the vectors do not change (untrained tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedder.chunks import CHUNK_BYTES, MAX_BATCHES, chunk_plan
from embedder.files import decoded_batches, load_file
from index.store.catalog import ImageRecord
from tests.imagegen import write_pictures


@pytest.mark.parametrize("count,batch,workers", [(2048, 32, 2), (100, 32, 2), (37, 4, 3),
                                                 (5, 8, 2), (640, 64, 1)])
def test_chunks_are_whole_batches_in_order_growing_then_shrinking(count, batch, workers):
    chunks = chunk_plan(count, batch, workers, image_bytes=3 * 64 * 64)
    assert [i for c in chunks for i in c] == list(range(count))
    assert all(c[0] % batch == 0 for c in chunks)
    assert all(len(c) % batch == 0 for c in chunks[:-1])
    sizes = [-(-len(c) // batch) for c in chunks]
    assert sizes[:workers] == [1] * min(workers, len(sizes))  # the first batch is not kept waiting
    assert sizes[-1] == 1 and max(sizes) <= MAX_BATCHES
    top = sizes.index(max(sizes))
    assert sizes[:top] == sorted(sizes[:top]) and sizes[top:] == sorted(sizes[top:], reverse=True)


def test_chunk_sizes_for_2048_files_and_their_limits():
    sizes = [len(c) // 32 for c in chunk_plan(2048, 32, 2, image_bytes=3 * 64 * 64)]
    assert sizes == [1, 1, 2, 2, 4, 4, 8, 8, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1]
    # a batch of ViT-B-32 inputs is over CHUNK_BYTES already: one batch per message
    assert {len(c) for c in chunk_plan(640, 64, 2, image_bytes=3 * 224 * 224)} == {64}
    assert 64 * 3 * 224 * 224 > CHUNK_BYTES
    # no workers, nothing to send: plain batches
    assert [len(c) for c in chunk_plan(10, 4, 0, image_bytes=1)] == [4, 4, 2]


def test_chunked_workers_give_the_same_batches_and_vectors_as_the_per_file_path(
        tiny_embedder, tmp_path):
    """Identical vectors for the same files: per-file normalised inputs (contiguous, the
    layout before chunks and channels-last pixels) in the same model batches, against
    batches cut from chunks decoded by two workers, with broken files inside chunks."""
    paths = write_pictures(tmp_path, 45)
    for i in (5, 6, 21):
        paths[i].write_bytes(b"broken")
    records = [ImageRecord(str(p), 0, 0) for p in paths]
    to_input = tiny_embedder.model_input()
    batch = 4
    # several batches per message, one with a broken file (21) inside
    assert [len(c) // batch for c in chunk_plan(len(records), batch, 2, 3 * 64 * 64)] == \
        [1, 1, 2, 2, 1, 1, 1, 1, 1, 0]
    batches = list(decoded_batches(records, to_input, batch_size=batch, workers=2))
    assert [[f.file for f in b.files] for b in batches] == \
        [records[s:s + batch] for s in range(0, len(records), batch)]
    assert [f.file.path for b in batches for f in b.failed] == [str(paths[i]) for i in (5, 6, 21)]
    for b in batches:
        assert b.pixels.dtype == torch.uint8 and b.pixels.shape == (len(b.ok), 3, 64, 64)
        inputs = [load_file(f.file, to_input)[1] for f in b.ok]
        expected = tiny_embedder.encode_images(torch.stack(inputs)) if inputs else None
        if expected is not None:
            np.testing.assert_array_equal(tiny_embedder.encode_images(b.pixels), expected)
        else:
            assert len(b.pixels) == 0
