"""Export -> import round trips (both layouts) and clip-retrieval's own folder shape, on
synthetic vectors and real faiss, SQLite and Parquet."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from index.ann.params import IndexOverrides
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.exchange.export import export_index
from index.exchange.importer import import_folder
from index.exchange.layouts import ExchangeError
from index.exchange.reader import read_batches
from index.store.contract import PRECOMPUTED
from index.store.directory import IndexDirectory
from tests.conftest import IVF_DIM, run_visearch
from tests.synthetic import clustered

QUIET = IndexingOptions(progress=False)


def top_keys(directory: IndexDirectory, queries: np.ndarray) -> tuple[list, np.ndarray]:
    searcher = Searcher(directory)
    try:
        hits = searcher.search(queries, SearchParams(k=10))
        paths = searcher.paths(hits.ids)
        return [[paths[int(i)] for i in row] for row in hits.ids], hits.scores
    finally:
        searcher.close()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_export_import_round_trip_gives_the_same_search_results(ivf_template, tmp_path, fmt):
    """The same keys under the same ids with bit-identical stored vectors, so any index over
    them answers alike; shown with exact search on both sides. (A retrained IVF is not
    compared: faiss k-means depends on the OpenMP thread count, which other tests change.)"""
    out = tmp_path / "exported"
    report = export_index(ivf_template, out, fmt, rows_per_file=7_000)
    assert (report.rows, report.files) == (20_000, 3)
    copy = IndexDirectory(tmp_path / "copy")
    exact = IndexingOptions(progress=False, overrides=IndexOverrides(spec="Flat"))
    imported = import_folder(copy, out, options=exact, shard_rows=6_000)
    assert imported.rows == 20_000 and imported.identity.name == PRECOMPUTED
    source, target = ivf_template.catalog(readonly=True), copy.catalog(readonly=True)
    assert source.live_rows() == target.live_rows()
    ids = source.live_ids()
    np.testing.assert_array_equal(ivf_template.vector_store(source, IVF_DIM).raw(ids),
                                  copy.vector_store(target, IVF_DIM).raw(ids))
    queries = clustered(50, IVF_DIM, seed=7)
    truth = ivf_template.vector_store(source, IVF_DIM).get(ids) @ queries.T
    source.close()
    target.close()
    keys_b, scores_b = top_keys(copy, queries)
    want = np.argsort(-truth, axis=0, kind="stable")[:10].T
    paths = {i: p for i, p in zip(ids.tolist(), [f"/synthetic/{i:07d}" for i in ids],
                                  strict=True)}
    assert keys_b == [[paths[int(i)] for i in row] for row in want]
    np.testing.assert_allclose(scores_b, np.take_along_axis(truth.T, want, axis=1), atol=1e-5)


def test_clip_retrieval_folder_imports_with_keys_and_captions(tmp_path):
    """The shape clip-retrieval's inference writes: float16 rows, metadata with image_path
    and caption, two numbered parts (img_emb_10 sorts after img_emb_9 by number)."""
    vectors = clustered(3_000, 32, seed=3)
    folder = tmp_path / "clip"
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for part, rows in ((9, slice(0, 1_000)), (10, slice(1_000, 3_000))):
        np.save(folder / "img_emb" / f"img_emb_{part}.npy", vectors[rows].astype(np.float16))
        ids = range(rows.start, rows.stop)
        pq.write_table(pa.table({"image_path": [f"s3://bucket/{i}.jpg" for i in ids],
                                 "caption": [f"photo {i}" if i % 2 else None for i in ids],
                                 "width": [640] * len(ids)}),
                       folder / "metadata" / f"metadata_{part}.parquet")
    directory = IndexDirectory(tmp_path / "idx")
    report = import_folder(directory, folder, options=QUIET, batch_rows=700, shard_rows=1_024)
    assert report.rows == 3_000
    catalog = directory.catalog(readonly=True)
    assert catalog.paths([0, 999, 1_000, 2_999]) == {
        0: "s3://bucket/0.jpg", 999: "s3://bucket/999.jpg", 1_000: "s3://bucket/1000.jpg",
        2_999: "s3://bucket/2999.jpg"}
    assert catalog.metadata_of(0, 1) == {0: {"width": "640"},
                                         1: {"caption": "photo 1", "width": "640"}}
    catalog.close()
    keys, scores = top_keys(directory, vectors[[5, 2_500]])
    assert [k[0] for k in keys] == ["s3://bucket/5.jpg", "s3://bucket/2500.jpg"]
    assert scores[:, 0] == pytest.approx([1.0, 1.0], abs=2e-3)


def test_reimported_keys_get_new_ids_and_export_in_id_order(tmp_path):
    folder = tmp_path / "clip"
    (folder / "img_emb").mkdir(parents=True)
    vectors = clustered(200, 16, seed=4)
    np.save(folder / "img_emb" / "img_emb_0.npy", vectors)
    directory = IndexDirectory(tmp_path / "idx")
    import_folder(directory, folder, options=QUIET)  # no metadata: keys name file and row
    again = tmp_path / "again"
    (again / "img_emb").mkdir(parents=True)
    np.save(again / "img_emb" / "img_emb_0.npy", vectors[:10][::-1].copy())
    import_folder(directory, again, options=QUIET)  # the same keys: new ids, old retired
    catalog = directory.catalog(readonly=True)
    assert catalog.counts() == {"live": 200, "stored": 210, "failed": 0}
    assert catalog.ids_for_paths(["img_emb_0/0"]) == {"img_emb_0/0": 200}
    catalog.close()
    out = tmp_path / "out"
    export_index(directory, out, "parquet")
    rows = [row for batch in read_batches(out) for row in zip(batch.keys, batch.vectors,
                                                               strict=True)]
    assert len(rows) == 200 and [rows[-10][0], rows[-1][0]] == ["img_emb_0/0", "img_emb_0/9"]
    np.testing.assert_allclose(rows[-10][1], vectors[9], atol=1e-3)


def test_refuses_folders_that_are_no_layout(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ExchangeError, match="neither"):
        import_folder(IndexDirectory(tmp_path / "idx"), tmp_path, options=QUIET)


@pytest.mark.slow
def test_cli_export_npy_then_import_keeps_the_model_and_metadata(tmp_path, ivf_template):
    out = tmp_path / "npy"
    done = run_visearch("export", str(ivf_template.path), "--out", str(out), "--format", "npy",
                        "--quiet", check=True)
    assert "exported 20000 64-d vectors to 1 npy file(s)" in done.stdout
    assert np.load(out / "img_emb" / "img_emb_0.npy", mmap_mode="r").dtype == np.float16
    assert pq.read_schema(out / "metadata" / "metadata_0.parquet").names[:2] == ["image_path",
                                                                                "id"]
    done = run_visearch("import", str(tmp_path / "idx"), "--from", str(out), "--quiet",
                        check=True)
    assert "imported 20000 vectors" in done.stdout and "model precomputed" in done.stdout
    bad = run_visearch("import", str(tmp_path / "idx2"), "--from", str(tmp_path / "nope"))
    assert bad.returncode == 1 and "is not a directory" in bad.stderr
