"""`visearch eval`: arguments and output; the measuring is in the evaluation package."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.args import add_client_security_arguments, channel_security, int_list, positive_int
from common.errors import VisearchError

EVAL_HELP = "measure recall@k, speed and task quality of an index"
EVAL_EPILOG = """\
Default mode (ANN fidelity): queries are a seeded sample of stored vectors (or the
embeddings of --queries DIR); ground truth is exact inner-product search over the
stored raw vectors. For each setting: k-recall@k (overlap with the exact top k),
1-recall@k (the exact nearest neighbour is in the top k), batch QPS and
single-query latency. '*' marks the recall/QPS Pareto front.

--labels CSV (path,label) or --labels-from-folders: recall, precision, MRR, mAP
and nDCG at each k, relevance = same label, the query itself excluded.
"""

class EvalUsageError(VisearchError, ValueError):
    """Arguments of `visearch eval` that do not fit together or the index."""


class EvalServerError(VisearchError):
    """The server of `visearch eval --server` refused or failed a call."""


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help=EVAL_HELP, description=EVAL_HELP,
                                   epilog=EVAL_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, help="index directory")
    parser.add_argument("--nprobe", type=int_list, help="nprobe values to sweep (default: "
                        "1,4,16,64,256 up to nlist, plus the index default)")
    parser.add_argument("--k", type=int_list, default=[1, 10, 100], help="k values (1,10,100)")
    parser.add_argument("--num-queries", type=positive_int, default=1000,
                        help="sampled stored vectors used as queries (default: 1000)")
    parser.add_argument("--queries", type=Path, help="embed the images of this folder as "
                        "queries instead (needs the index's model)")
    parser.add_argument("--single-queries", type=positive_int, default=200,
                        help="queries timed one by one for latency (default: 200)")
    parser.add_argument("--batch-size", type=positive_int, default=100,
                        help="queries per call for batched latency and QPS (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="query sample seed (default: 0)")
    parser.add_argument("--target-recall", type=float,
                        help="pick the fastest nprobe whose k-recall@k reaches this")
    parser.add_argument("--target-k", type=positive_int, default=10,
                        help="the k of --target-recall (default: 10)")
    parser.add_argument("--apply", action="store_true",
                        help="write the picked nprobe (and refine) as the index's default")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=Path, help="CSV of path,label: task quality mode")
    labels.add_argument("--labels-from-folders", action="store_true",
                        help="task quality with each image's folder name as its label")
    parser.add_argument("--filter", metavar="EXPR",
                        help="measure filtered recall: every query carries this filter "
                             "(README: Filters) and ground truth is an exact search over "
                             "the images it allows")
    parser.add_argument("--server", help="HOST:PORT: search through the gRPC server instead "
                        "of in-process (ground truth still from the index directory)")
    parser.add_argument("--feedback", type=Path, metavar="LOG",
                        help="click feedback mode: a `serve --feedback-log` folder or file; "
                             "clicked hits are the relevant ones, and recall@k, MRR and nDCG "
                             "are measured on the rankings as served")
    parser.add_argument("--json", type=Path, dest="json_out", help="write every number here")
    parser.add_argument("--plot", type=Path, help="draw recall@k against QPS to this PNG")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=eval_command)


@contextmanager
def _backend(args: argparse.Namespace, searcher: Any) -> Iterator[Any]:
    """In-process by default; with ``--server`` every query goes through gRPC."""
    if args.server is None:
        from evaluation.backends import FilteredLocalBackend, LocalBackend

        yield FilteredLocalBackend(searcher, args.filter) if args.filter else \
            LocalBackend(searcher)
        return
    import grpc

    from evaluation.remote import RemoteBackend
    from server.client import SearchClient

    with SearchClient(args.server, security=channel_security(args)) as client:
        try:
            yield RemoteBackend(client, args.filter)
        except grpc.RpcError as exc:  # refused, unreachable...: a message, not a traceback
            raise EvalServerError(f"{args.server}: {exc.code().name}: {exc.details()}") \
                from exc


def eval_command(args: argparse.Namespace) -> int:
    from common.machine import describe_machine
    from index.ann.search import Searcher
    from index.store.directory import IndexDirectory

    if args.feedback is not None:
        from cli.eval_feedback import feedback_mode

        return feedback_mode(args)
    if args.apply and args.target_recall is None:
        raise EvalUsageError("--apply needs --target-recall")
    if args.filter and (args.labels or args.labels_from_folders):
        raise EvalUsageError("--filter measures ANN fidelity; it does not combine with labels")
    if args.server is None and (args.tls or args.token_file or any(
            (args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name))):
        raise EvalUsageError("the TLS and token options apply with --server")
    directory = IndexDirectory(args.index)
    searcher = Searcher(directory)
    report: dict[str, Any] = {
        "index": str(args.index), "index_version": searcher.manifest.version,
        "index_spec": searcher.manifest.index.spec, "vectors": searcher.ntotal,
        "model": searcher.manifest.model.name, "untrained": searcher.manifest.model.untrained,
        "seed": args.seed, "through": args.server or "in-process", "machine": describe_machine(),
    }
    with _backend(args, searcher) as backend:
        if args.labels or args.labels_from_folders:
            _label_mode(args, searcher, backend, report)
        else:
            _fidelity_mode(args, directory, searcher, backend, report)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _fidelity_mode(args: argparse.Namespace, directory: Any, searcher: Any, backend: Any,
                   report: dict[str, Any]) -> None:
    import numpy as np

    from evaluation.fidelity import exact_neighbours, fastest_meeting, settings_to_sweep, sweep
    from index.store.vectors import sample_ids

    settings_ = searcher.manifest.index
    ks = [k for k in args.k if k <= searcher.ntotal] or [min(args.k[0], searcher.ntotal)]
    live = searcher.held_ids()  # deleted rows are neither queries nor ground truth
    matching = live
    if args.filter:  # ground truth: exact search over the held images the filter allows
        from index.rerank.stage import Rerank, allowed_ids

        allowed = allowed_ids(searcher, Rerank(filter=args.filter))
        matching = np.flatnonzero(allowed) if allowed is not None else live
        if len(matching) == 0:
            raise EvalUsageError(f"no image matches --filter {args.filter!r}")
        report["filter"] = {"expression": args.filter, "matching": int(len(matching))}
    if args.queries:
        from evaluation.queries import embed_folder

        queries = embed_folder(args.queries, searcher.manifest.model, args.index)
        source = f"images in {args.queries}"
    else:
        queries = searcher.store.get(sample_ids(live, args.num_queries, args.seed))
        source = f"{min(args.num_queries, len(live))} stored vectors, seed {args.seed}"
    if args.nprobe and not searcher.is_ivf:
        raise EvalUsageError(f"--nprobe applies to IVF indexes; this one is {settings_.spec}")
    settings = settings_to_sweep(settings_, args.nprobe)
    start = time.perf_counter()
    truth = exact_neighbours(searcher.store, matching, queries, max(ks))
    truth_seconds = time.perf_counter() - start
    target_k = args.target_k if args.target_k in ks else ks[min(1, len(ks) - 1)]
    result = sweep(backend, queries, truth, ks, settings, target_k, args.single_queries,
                   args.batch_size)
    print(f"index {settings_.spec}, {searcher.ntotal:,} vectors, version "
          f"{searcher.manifest.version}; queries: {source}; exact ground truth in "
          f"{truth_seconds:.1f} s; through {report['through']}"
          + (" [UNTRAINED model]" if searcher.manifest.model.untrained else ""))
    print(_table(result, target_k))
    report.update({
        "mode": "ann_fidelity", "queries": source, "num_queries": result.num_queries,
        "single_queries": result.single_queries, "k": ks, "ground_truth_seconds": truth_seconds,
        "nprobe": sorted({s.nprobe for s in settings if s.nprobe is not None}),
        "results": [_row_json(r) for r in result.results],
    })
    if args.target_recall is not None:
        chosen = fastest_meeting(result.results, args.target_recall, target_k)
        report["target"] = {"recall": args.target_recall, "k": target_k,
                            "chosen": _row_json(chosen) if chosen else None}
        if chosen is None:
            print(f"no setting reaches {target_k}-recall@{target_k} >= {args.target_recall}")
        else:
            print(f"fastest setting with {target_k}-recall@{target_k} >= {args.target_recall}: "
                  f"{chosen.setting.label} ({chosen.k_recall[target_k]:.3f}, "
                  f"{chosen.batch_qps:,.0f} QPS)")
        if args.apply:
            _apply(directory, searcher, args.target_recall, target_k, report)
    if args.plot:
        from evaluation.plot import plot_sweep

        plot_sweep(result, target_k, args.plot, title=f"{settings_.spec}, {searcher.ntotal:,} "
                   f"vectors ({report['through']})")
        print(f"plot written to {args.plot}")


def _apply(directory: Any, searcher: Any, target: float, k: int,
           report: dict[str, Any]) -> None:
    """The build's own tuner (index.ann.tuning) picks the defaults that are written."""
    from evaluation.tuning import apply_tuned
    from index.ann.tuning import TuneConfig, tune_searcher

    if not searcher.is_ivf:
        raise EvalUsageError("--apply sets nprobe, and this index is not IVF")
    tuned = tune_searcher(searcher, TuneConfig(target=target, k=k))
    updated = apply_tuned(directory, searcher.manifest.version, tuned)
    report["applied"] = {"version": updated.version, "default_nprobe": tuned.nprobe,
                         "refine_factor": tuned.refine, "tuned_recall": tuned.recall,
                         "met": tuned.met}
    print(f"applied: tuned {tuned.summary()} in version {updated.version} (a following "
          f"server swaps it in)")


def _label_mode(args: argparse.Namespace, searcher: Any, backend: Any,
                report: dict[str, Any]) -> None:
    from evaluation.quality import evaluate_labels, labels_from_folders, read_labels

    labels = read_labels(args.labels) if args.labels else \
        labels_from_folders(searcher.paths(searcher.held_ids()))
    nprobe = args.nprobe[0] if args.nprobe else None
    quality = evaluate_labels(backend, searcher.catalog, searcher.store, labels, args.k,
                              nprobe, args.num_queries, args.seed)
    report.update({"mode": "task_quality", "k": args.k, **quality})
    print(f"index {searcher.manifest.index.spec}, {searcher.ntotal:,} vectors; "
          f"{quality['queries']} labelled queries ({quality['queries_with_relevant']} with "
          f"relevant items) over {quality['labels']} labels; through {report['through']}"
          + (" [UNTRAINED model]" if searcher.manifest.model.untrained else ""))
    print(f"{'k':>5}  {'recall':>7}  {'precision':>9}  {'MRR':>6}  {'mAP':>6}  {'nDCG':>6}")
    for k, m in quality["metrics"].items():  # type: ignore[attr-defined]
        print(f"{k:>5}  {m['recall']:7.3f}  {m['precision']:9.3f}  {m['mrr']:6.3f}  "
              f"{m['map']:6.3f}  {m['ndcg']:6.3f}")


def _table(result: Any, target_k: int) -> str:
    ks = result.ks
    head = f"{'nprobe':>6} {'refine':>6}" + "".join(
        f" {f'{k}-R@{k}':>9} {f'1-R@{k}':>7}" for k in ks) + \
        f" {'batch QPS':>10} {'batch p50':>9} {'p99':>7} {'1q QPS':>7} {'1q p50':>7}" \
        f" {'p99':>7}  front"
    lines = [head]
    for r in result.results:
        probe = "-" if r.setting.nprobe is None else str(r.setting.nprobe)
        cells = "".join(f" {r.k_recall[k]:9.3f} {r.one_recall[k]:7.3f}" for k in ks)
        lines.append(f"{probe:>6} {r.setting.refine:>6}{cells} {r.batch_qps:10,.0f} "
                     f"{r.batch_ms['p50']:9.2f} {r.batch_ms['p99']:7.2f} "
                     f"{r.single_qps:7,.0f} {r.single_ms['p50']:7.2f} {r.single_ms['p99']:7.2f}"
                     f"  {'*' if r.pareto else ''}")
    lines.append(f"(latencies in ms; batches of {result.results[0].batch_size} queries; "
                 f"front: Pareto on {target_k}-recall@{target_k} vs batch QPS)")
    return "\n".join(lines)


def _row_json(r: Any) -> dict[str, Any]:
    return {"nprobe": r.setting.nprobe, "refine_factor": r.setting.refine,
            "k_recall": {str(k): v for k, v in r.k_recall.items()},
            "one_recall": {str(k): v for k, v in r.one_recall.items()},
            "batch_qps": r.batch_qps, "batch_size": r.batch_size, "batch_ms": r.batch_ms,
            "single_qps": r.single_qps, "single_ms": r.single_ms, "pareto": r.pareto}

