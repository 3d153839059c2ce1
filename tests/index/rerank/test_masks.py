"""A filter's allowed ids, count, bitmap and faiss parameters are made once per filter and
index version, and made again when the metadata changes (a write through another
connection, as a live server's writer makes)."""

from __future__ import annotations

import numpy as np

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.rerank.filtered import top_among
from index.rerank.stage import Rerank, allowed_for, rank
from index.store import metadata
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys

N = 3000


def test_allowed_is_cached_per_filter_until_the_metadata_changes(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(N, 16, seed=4), keys(N), precomputed_identity(16),
                   IndexingOptions(progress=False))
    writer = directory.catalog()
    metadata.write_fields(writer, [(i, {"bucket": i % 10}) for i in range(N)],
                          {"bucket": "integer"})
    searcher = Searcher(directory)
    spec = Rerank(filter="bucket < 5")
    first = allowed_for(searcher, spec)
    assert first is not None and first.count == N // 2
    assert allowed_for(searcher, spec) is first  # cached: no pass over the ids per query
    assert not first.mask.flags.writeable
    bits = np.unpackbits(first.bitmap(), bitorder="little")[:N].astype(bool)
    assert np.array_equal(bits, first.mask) and not first.bitmap()[-8:].any()  # padded

    q = searcher.prepare(clustered(1, 16, seed=8))
    got, how = top_among(searcher, q, first, 10, SearchParams(k=10), force="selector")
    ids = first.ids()
    truth = ids[np.lexsort((ids, -(searcher.store.get(ids).astype(np.float32) @ q[0])))][:10]
    assert how == "selector" and [i for i, _ in got] == truth.tolist()
    assert len(first.memo) == 1  # one selector and parameter set, reused
    top_among(searcher, q, first, 10, SearchParams(k=10), force="selector")
    assert len(first.memo) == 1

    excluded = allowed_for(searcher, Rerank(filter="bucket < 5", exclude_ids=(0,)))
    assert excluded is not None and excluded is not first and excluded.count == N // 2 - 1
    assert first.mask[0]  # the cached mask is not changed by a query's exclusions

    # Another connection rewrites the field: the next query sees it.
    metadata.write_fields(writer, [(i, {"bucket": 9}) for i in range(0, N, 10)],
                          {"bucket": "integer"})
    after = allowed_for(searcher, spec)
    assert after is not first and after.count == N // 2 - N // 10
    assert rank(searcher, q, SearchParams(k=5), spec).matched == after.count
    writer.close()
    searcher.close()
