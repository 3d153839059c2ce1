#!/usr/bin/env python3
"""`make demo`: a sample corpus, an index, a gRPC server, and queries against it.

Uses the default CLIP model (ViT-B-32, laion2b_s34b_b79k) when its weights can
be had, otherwise says so and falls back to the untrained tiny model.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_sample_corpus import write_corpus  # noqa: E402

from cli.main import main as visearch  # noqa: E402
from embedder import EmbedderConfig  # noqa: E402
from embedder.weights import WeightsUnavailableError, resolve_model  # noqa: E402

DEMO = ROOT / "demo"
GROUPS = 40


def model_arguments() -> list[str]:
    try:
        resolve_model(EmbedderConfig())
        return []
    except WeightsUnavailableError as exc:
        print(f"demo: ViT-B-32 weights are not available here ({str(exc).split(':')[0]}); "
              "using --model tiny, which is UNTRAINED: its rankings are not meaningful")
        return ["--model", "tiny"]


def start_server(index_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = DEMO / "port"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", str(index_dir),
                             "--port", "0", "--port-file", str(port_file)], cwd=ROOT)
    deadline = time.monotonic() + 300
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("demo: the server did not start")
        time.sleep(0.2)
    return proc, int(port_file.read_text())


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    corpus, queries = write_corpus(DEMO / "data", groups=GROUPS)
    print(f"demo: generated {len(corpus)} images in {GROUPS} groups, {len(queries)} held-out "
          f"queries, labels in {DEMO / 'data' / 'labels.csv'}")
    index_dir = DEMO / "index"
    code = visearch(["build", str(DEMO / "data" / "corpus"), "--out", str(index_dir),
                     *model_arguments()])
    if code:
        return code
    server, port = start_server(index_dir)
    target = f"127.0.0.1:{port}"
    try:
        for query in queries[:2]:
            print(f"\n$ visearch query --server {target} {query.name} -k 5")
            visearch(["query", "--server", target, str(query), "-k", "5"])
        print(f"\n$ visearch query --server {target} {queries[2].name} --crop 0,0,128,128 -k 3")
        visearch(["query", "--server", target, str(queries[2]), "--crop", "0,0,128,128",
                  "-k", "3"])
        print(f'\n$ visearch query --server {target} --text "a red circle" -k 3')
        visearch(["query", "--server", target, "--text", "a red circle", "-k", "3"])
        labels = DEMO / "data" / "labels.csv"
        print(f"\n$ visearch eval {index_dir.name} --labels labels.csv --k 1,5 --server {target}")
        visearch(["eval", str(index_dir), "--labels", str(labels), "--k", "1,5",
                  "--server", target])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(f"\n$ visearch eval {index_dir.name} --k 1,10")
    visearch(["eval", str(index_dir), "--k", "1,10"])
    print("\ndemo: each query's right answers are the images of its group (file name prefix)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
