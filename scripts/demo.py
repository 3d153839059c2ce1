#!/usr/bin/env python3
"""`make demo`: a sample corpus, an index, and a few queries with their results.

Uses the default CLIP model (ViT-B-32, laion2b_s34b_b79k) when its weights can
be had, otherwise says so and falls back to the untrained tiny model.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_sample_corpus import write_corpus  # noqa: E402

from embedder import EmbedderConfig  # noqa: E402
from embedder.weights import WeightsUnavailableError, resolve_model  # noqa: E402
from server.cli import main as visearch  # noqa: E402

DEMO = ROOT / "demo"


def model_arguments() -> list[str]:
    try:
        resolve_model(EmbedderConfig())
        return []
    except WeightsUnavailableError as exc:
        print(f"demo: ViT-B-32 weights are not available here ({str(exc).split(':')[0]}); "
              "using --model tiny, which is UNTRAINED: its rankings are not meaningful")
        return ["--model", "tiny"]


def show_queries(index_dir: Path, queries: list[Path], model: list[str]) -> None:
    from embedder.decode import decode_image
    from embedder.embedder import load_embedder
    from index.search import Searcher, SearchParams

    searcher = Searcher(index_dir)
    m = searcher.manifest.model
    embedder = load_embedder(EmbedderConfig(model=m.name, pretrained=m.pretrained))
    for query in queries:
        start = time.perf_counter()
        vector = embedder.encode_pil([decode_image(query.read_bytes())])
        hits = searcher.search(vector, SearchParams(k=5))
        ms = (time.perf_counter() - start) * 1000
        group = query.name.split("_")[0]
        print(f"\nquery {query.name} ({ms:.1f} ms):")
        paths = searcher.paths(hits.ids[0])
        for rank, (vid, score) in enumerate(hits.row(0), 1):
            name = Path(paths[vid]).name
            mark = "same group" if name.startswith(group) else ""
            print(f"  {rank}. {score:.3f}  {name}  {mark}")


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    corpus, queries = write_corpus(DEMO / "data", groups=40)
    print(f"demo: generated {len(corpus)} images in 40 groups, {len(queries)} held-out queries")
    model = model_arguments()
    index_dir = DEMO / "index"
    code = visearch(["build", str(DEMO / "data" / "corpus"), "--out", str(index_dir), *model])
    if code:
        return code
    show_queries(index_dir, queries[:3], model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
