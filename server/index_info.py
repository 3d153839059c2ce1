"""InfoResponse fields on the served version's search defaults: the recall the build's
self-tuning measured for them and what one vector costs in memory or on disk.

Kept apart from the servicer so Info answers from the manifest the way the build's
summary line does (index.ann.tuning.defaults_note), with the re-rank store the server
actually uses (`serve` may load the RAM copy whatever the manifest chose).
"""

from __future__ import annotations

from typing import Any


def defaults_fields(searcher: Any) -> dict[str, object]:
    """For a Searcher, or a MultiSearcher (whose manifest is its first shard's)."""
    index = searcher.manifest.index
    size = searcher.manifest.bytes_per_vector()
    first = getattr(searcher, "shards", (searcher,))[0]
    fields: dict[str, object] = {"code_bytes": size["code"], "rerank_bytes": size["rerank"],
                                 "rerank_store": getattr(first, "refine_store", "")}
    if index.tuned_recall is not None:
        fields.update(target_recall=index.target_recall or 0.0,
                      tuned_recall=index.tuned_recall, tuned_k=index.tuned_k or 0,
                      tune_queries=index.tune_queries or 0,
                      tuned_vector_count=index.tuned_vectors or 0)
    return fields
