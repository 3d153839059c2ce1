"""images/s of `--engine ray` (2 embed actors on a local Ray) vs `--engine local` on this
machine, both with the untrained tiny model over generated images.

    python scripts/bench_ray.py [--images 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedder import EmbedderConfig  # noqa: E402
from index.build.pipeline import BuildConfig, run_build  # noqa: E402
from index.build.publish import IndexingOptions  # noqa: E402
from index.build.ray_engine import RayOptions, ensure_ray, ray_stages  # noqa: E402
from tests.imagegen import write_pictures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        write_pictures(folder, args.images)

        def cfg(name: str) -> BuildConfig:
            return BuildConfig(inputs=(str(folder),), out=Path(tmp) / name, workers=1,
                               embedder=EmbedderConfig(model=args.model, device="cpu"),
                               indexing=IndexingOptions(progress=False))

        local = run_build(cfg("local"))
        print(f"local: {local.ingest.embedded / local.ingest.seconds:.1f} images/s")
        ensure_ray(None)
        ray_cfg = cfg("ray")
        remote = run_build(ray_cfg, stages=ray_stages(ray_cfg, RayOptions(workers=2)))
        print(f"ray (2 actors, local Ray, includes its start-up): "
              f"{remote.ingest.embedded / remote.ingest.seconds:.1f} images/s")


if __name__ == "__main__":
    main()
