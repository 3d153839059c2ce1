"""`visearch build`: argument parsing and output; the work is in index.build.pipeline."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.args import (
    add_decode_arguments,
    add_model_arguments,
    decode_limits,
    embedder_config,
    positive_int,
)
from common.paths import display_path, is_utf8, path_bytes
from index.ann.params import IndexOverrides, IndexSpecError
from index.store.vectors import DEFAULT_SHARD_SIZE, VECTOR_DTYPES

if TYPE_CHECKING:
    from embedder import EmbedderConfig
    from index.build.pipeline import BuildReport

log = logging.getLogger("visearch.build")

BUILD_HELP = "embed every image under PATH... and build (or update) the index in --out"
BUILD_EPILOG = """\
PATH is a directory (searched recursively), an image file, or @FILE naming a text
file with one path per line. Rerunning on the same --out embeds only new or
changed images; a killed build resumes where it stopped.

Index choice: below 10,000 vectors an exact flat index; above, IVF with nlist ~
4*sqrt(N) (a power of two) and SQ8 codes, or 2-bit RaBitQ codes from 4,096 lists
(N >= 524,288); then nprobe and refine are tuned to --target-recall.
"""

SYNC_HELP = ("bring the index IDX in line with PATH...: add new images, re-embed changed ones, "
             "remove those that vanished")


def add_build_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build", help=BUILD_HELP, description=BUILD_HELP,
                                   epilog=BUILD_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="directory, image, or @list.txt")
    parser.add_argument("--out", required=True, type=Path, help="index directory")
    parser.add_argument("--prune", action="store_true",
                        help="also remove indexed files under PATH... that no longer exist")
    add_build_options(parser)
    parser.set_defaults(handler=build_command)


def add_sync_parser(subparsers: argparse._SubParsersAction) -> None:
    """`visearch sync IDX PATH...`: `build PATH... --out IDX --prune` under its obvious name."""
    parser = subparsers.add_parser("sync", help=SYNC_HELP, description=SYNC_HELP,
                                   epilog=BUILD_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, metavar="IDX", help="index directory")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="directory, image, or @list.txt")
    add_build_options(parser)
    parser.set_defaults(handler=build_command, prune=True)


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """Model, decoding and index options shared by `build` and `sync`."""
    add_model_arguments(parser)
    add_decode_arguments(parser)
    group = parser.add_argument_group("index")
    group.add_argument("--index-spec", help="faiss factory string, e.g. 'IVF4096,PQ64' or 'Flat'")
    group.add_argument("--nlist", type=positive_int, help="IVF lists (default: automatic)")
    group.add_argument("--pq-m", type=positive_int, help="PQ sub-quantizers; must divide dim")
    group.add_argument("--nbits", type=positive_int, help="bits per PQ code (default: 8)")
    group.add_argument("--target-recall", type=float, help="10-recall@10 the build tunes "
                       "nprobe and refine to reach on sampled stored vectors (default: the "
                       "last build's, else 0.95)")
    group.add_argument("--no-tune", action="store_true",
                       help="skip tuning: keep the rule's (or the last build's) nprobe/refine")
    group.add_argument("--refine-store", choices=("mmap", "ram"),
                       help="re-rank from the memory-mapped float16 shards (mmap: least RAM, "
                       "the default) or a float16 copy in RAM (ram: fastest, dim*2 B/vector)")
    group.add_argument("--retrain", action="store_true",
                       help="train a new index instead of adding to the current one")
    group.add_argument("--vector-dtype", choices=VECTOR_DTYPES, default="float16",
                       help="dtype of the stored raw vectors (default: float16)")
    group.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE,
                       help="vectors per stored shard: the most a killed build re-embeds")
    group.add_argument("--ondisk", action="store_true",
                       help="IVF indexes: publish the inverted lists merged on disk "
                            "(index.ivfdata, faiss merge_ondisk), memory-mapped when served; "
                            "for indexes larger than RAM. Each build then rebuilds the index")
    group.add_argument("--index-shards", type=positive_int, default=1, metavar="N",
                       help="train once, then add vectors in N parallel processes and merge "
                            "them with faiss (same index as N=1; default: 1)")
    group.add_argument("--no-gpu-index", action="store_true",
                       help="train and add on the CPU even when faiss has a GPU")
    parser.add_argument("--metadata", type=Path, metavar="FILE",
                        help="user fields by path: CSV with a 'path' column or JSON Lines with "
                             "a 'path' key (README: Filters); on an existing index it updates "
                             "fields without re-embedding")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: decode and embed on Ray Data, write "
                             "here (default: local)")
    engine.add_argument("--ray-address", metavar="ADDR",
                        help="Ray cluster (auto, ray://host:10001); default: a local Ray")
    engine.add_argument("--ray-workers", type=positive_int, default=2, metavar="N",
                        help="embed actors, one model each (default: 2)")
    engine.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs per embed actor (default: 0, CPU)")
    gpu = parser.add_argument_group("GPU ingest")
    gpu.add_argument("--decode", choices=("auto", "cpu", "gpu"), default="auto",
                     help="where JPEGs are decoded: auto = on the GPU (nvJPEG, batched resize) "
                          "when the model runs on CUDA, else in the decode workers; cpu forces "
                          "the workers (default: auto)")
    gpu.add_argument("--compile", action="store_true",
                     help="torch.compile the fp16 image tower on the GPU path (CUDA graphs; "
                          "about a minute to compile, pays on large builds)")
    parser.add_argument("--report", type=Path, help="write the build report as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_command(args: argparse.Namespace) -> int:
    from index.build.pipeline import BuildConfig, run_build  # faiss: only when building
    from index.build.publish import IndexingOptions, NothingToIndexError

    if args.index_spec and any(v is not None for v in (args.nlist, args.pq_m, args.nbits)):
        raise IndexSpecError("give either --index-spec or --nlist/--pq-m/--nbits, not both")
    config = BuildConfig(
        inputs=tuple(args.paths),
        out=args.out,
        embedder=build_embedder_config(args),
        limits=decode_limits(args),
        batch_size=args.batch_size,
        workers=args.workers,
        shard_size=args.shard_size,
        prune=args.prune,
        metadata=args.metadata,
        decode=args.decode,
        compile=args.compile,
        indexing=IndexingOptions(
            overrides=IndexOverrides(args.index_spec, args.nlist, args.pq_m, args.nbits),
            vector_dtype=args.vector_dtype,
            use_gpu=not args.no_gpu_index,
            retrain=args.retrain,
            progress=not args.quiet,
            index_shards=args.index_shards, ondisk=args.ondisk,
            tune=not args.no_tune,
            target_recall=args.target_recall,
            refine_store=args.refine_store,
        ),
    )
    try:
        report = run_build(config, stages=engine_stages(args, config))
    except NothingToIndexError as exc:  # every file failed: the reasons are all there is
        print_failures(exc.failed)
        if args.report:
            write_report(args.report, {"error": str(exc), "listed": exc.listed,
                                       "failed": [failure_json(p, r) for p, r in exc.failed]})
        raise
    print_failures(report.failed)
    for unknown in (report.metadata.unknown_paths if report.metadata else []):
        print(f"metadata: no indexed image {display_path(unknown)}", file=sys.stderr)
    if args.report:
        write_report(args.report, report_json(report))
    print(report.summary())
    return 0


def engine_stages(args: argparse.Namespace, config: Any) -> Any:
    """None (the local stages) or the Ray engine's."""
    if args.engine != "ray":
        return None
    from index.build.ray_engine import RayOptions, ray_stages

    return ray_stages(config, RayOptions(address=args.ray_address, workers=args.ray_workers,
                                         gpus_per_worker=args.gpus_per_worker,
                                         batch_size=args.batch_size))


def build_embedder_config(args: argparse.Namespace) -> EmbedderConfig:
    """Without --model, the index already in --out names its model: a rebuild must not
    load the default model (it would not match, or not even be available offline).

    Raises:
        NoModelError: that index holds precomputed vectors, which no model can extend.
    """
    from index.store.contract import identity_in, require_model
    from index.store.directory import IndexDirectory

    stored = None if args.model is not None else identity_in(IndexDirectory(args.out))
    if stored is not None:
        require_model(stored, "adding images")
        log.info("model %s, as recorded in the index in --out", stored.name)
    return embedder_config(args, stored, args.out)


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def print_failures(failed: Sequence[tuple[str, str]]) -> None:
    """One ``failed: PATH: REASON`` line per file on stderr, the path in readable form."""
    for path, reason in failed:
        print(f"failed: {display_path(path)}: {display_path(reason)}", file=sys.stderr)


def failure_json(path: str, reason: str) -> dict[str, str]:
    """``path`` readable as text; a name that is not UTF-8 also comes as its exact bytes
    (base64), since the readable form cannot open the file again."""
    entry = {"path": display_path(path), "reason": display_path(reason)}
    if not is_utf8(path):
        entry["path_base64"] = base64.b64encode(path_bytes(path)).decode("ascii")
    return entry


def report_json(report: BuildReport) -> dict[str, Any]:
    m = report.indexing.manifest
    return {
        "listed": report.listed,
        "skipped": report.skipped + report.ingest.unchanged,
        "embedded": report.ingest.embedded,
        "reused": report.ingest.reused,
        "ignored_non_images": report.ignored,
        "failed": [failure_json(p, r) for p, r in report.failed],
        "seconds": round(report.seconds, 3),
        "version": m.version,
        "live_count": m.live_count,
        "index_spec": m.index.spec,
        "default_nprobe": m.index.default_nprobe,
        "refine_factor": m.index.refine_factor,
        "target_recall": m.index.target_recall,
        "tuned_recall": m.index.tuned_recall,
        "bytes_per_vector": m.bytes_per_vector(),
        "exact": m.index.exact,
        "retrained": report.indexing.retrained,
        "repaired_index": report.indexing.repaired,
        "new_version": report.indexing.published,
        "faiss_device": report.indexing.faiss_device,
        "missing_on_disk": report.missing_on_disk,
        "pruned": report.pruned,
        "untrained_model": m.model.untrained,
    }
