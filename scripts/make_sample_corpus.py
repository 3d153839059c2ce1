#!/usr/bin/env python3
"""Generate a small sample corpus with ground truth: groups of related images.

Each group is one synthetic scene (a palette, a gradient and shapes) saved as
several variants (crop, mirror, colour shift, blur, rotation, rescale). The
corpus holds all but one variant of each group; the held-out variant is a
query whose right answers are its group. labels.csv maps every file to its
group, for `visearch eval --labels`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

VARIANTS = ("original", "crop", "mirror", "colour", "blur", "rotate", "small")


def scene(seed: int, size: int = 256) -> Image.Image:
    rng = np.random.default_rng(seed)
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(5)]
    y, x = np.mgrid[0:size, 0:size] / size
    a, b = np.array(palette[0]), np.array(palette[1])
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
    image = Image.fromarray(np.clip(a * (1 - t) + b * t, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for i in range(int(rng.integers(4, 9))):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
        w, h = (int(v) for v in rng.integers(25, size // 2, 2))
        colour = palette[2 + i % 3]
        shape = rng.integers(0, 3)
        box = (x0, y0, x0 + w, y0 + h)
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(x0, y0 + h), (x0 + w // 2, y0), (x0 + w, y0 + h)], fill=colour)
    return image


def variant(image: Image.Image, kind: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = image.size
    if kind == "crop":
        dx, dy = (int(v) for v in rng.integers(10, w // 5, 2))
        return image.crop((dx, dy, w - dx // 2, h - dy // 2))
    if kind == "mirror":
        return ImageOps.mirror(image)
    if kind == "colour":
        return ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(1.2)).enhance(0.7)
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(2))
    if kind == "rotate":
        return image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BICUBIC,
                            fillcolor=(128, 128, 128))
    if kind == "small":
        return image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    return image


def write_corpus(out: Path, groups: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Returns (corpus files, query files); writes labels.csv for both."""
    corpus_dir, query_dir = out / "corpus", out / "queries"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    query_dir.mkdir(parents=True, exist_ok=True)
    corpus, queries, rows = [], [], []
    for g in range(groups):
        base = scene(seed * 100_000 + g)
        held_out = VARIANTS[1 + g % (len(VARIANTS) - 1)]
        for k, kind in enumerate(VARIANTS):
            folder = query_dir if kind == held_out else corpus_dir
            path = folder / f"group{g:03d}_{kind}.jpg"
            variant(base, kind, seed + g * 31 + k).save(path, quality=90)
            (queries if kind == held_out else corpus).append(path)
            rows.append((str(path.resolve()), f"group{g:03d}"))
    with open(out / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return corpus, queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to create: corpus/, queries/, labels.csv")
    parser.add_argument("--groups", type=int, default=40, help="scenes (default: 40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    corpus, queries = write_corpus(args.out, args.groups, args.seed)
    print(f"wrote {len(corpus)} corpus images and {len(queries)} queries in {args.groups} groups "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
