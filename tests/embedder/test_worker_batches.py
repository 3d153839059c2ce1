"""Batches from decode workers: the vectors are those of the per-file model inputs
(untrained tiny model), bit for bit, and the workers are gone after the last batch."""

from __future__ import annotations

import numpy as np
import torch

from embedder.files import decoded_batches, load_file
from index.store.catalog import ImageRecord
from tests.imagegen import write_pictures


def test_batches_from_workers_embed_exactly_like_the_per_file_path(tiny_embedder, tmp_path):
    paths = write_pictures(tmp_path, 20)
    for i in (5, 6, 13):
        paths[i].write_bytes(b"broken")
    records = [ImageRecord(str(p), 0, 0) for p in paths]
    to_input = tiny_embedder.model_input()
    batches = list(decoded_batches(records, to_input, batch_size=4, workers=2))
    assert [[f.file for f in b.files] for b in batches] == \
        [records[s:s + 4] for s in range(0, len(records), 4)]
    assert [f.file.path for b in batches for f in b.failed] == [str(paths[i]) for i in (5, 6, 13)]
    for b in batches:
        assert b.pixels.dtype == torch.uint8 and b.pixels.shape == (len(b.ok), 3, 64, 64)
        inputs = torch.stack([load_file(f.file, to_input)[1] for f in b.ok])
        assert torch.equal(tiny_embedder.pixel_plan.normalise(b.pixels), inputs)
        np.testing.assert_array_equal(tiny_embedder.encode_images(b.pixels),
                                      tiny_embedder.encode_images(inputs))


def test_the_workers_exit_after_the_last_batch_without_holding_up_the_caller(
        tiny_embedder, tmp_path):
    import multiprocessing
    import threading

    from embedder.files import EXIT_THREAD

    records = [ImageRecord(str(p), 0, 0) for p in write_pictures(tmp_path, 9)]
    batches = decoded_batches(records, tiny_embedder.model_input(), batch_size=4, workers=2)
    assert [len(b.files) for b in batches] == [4, 4, 1]
    for thread in threading.enumerate():
        if thread.name == EXIT_THREAD:
            thread.join(timeout=30)
    assert not multiprocessing.active_children()
