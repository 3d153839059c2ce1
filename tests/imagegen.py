"""Real image files for tests: distinct synthetic pictures and every kind of broken file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct RGB picture per seed: a colour gradient plus random rectangles."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 255, 3)
    slope = rng.uniform(-2, 2, (2, 3))
    pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        pixels[y0:y0 + rng.integers(4, h // 2), x0:x0 + rng.integers(4, w // 2)] = \
            rng.integers(0, 255, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_pictures(folder: Path, count: int, *, start: int = 0, prefix: str = "img") -> list[Path]:
    """``count`` distinct images, alternating JPEG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        ext = "jpg" if i % 2 else "png"
        path = folder / f"{prefix}{i:04d}.{ext}"
        picture(i).save(path, quality=95) if ext == "jpg" else picture(i).save(path)
        paths.append(path)
    return paths


def png_bomb(path: Path, width: int = 20_000, height: int = 10_000) -> None:
    """A valid greyscale PNG of width*height pixels that compresses to a few hundred KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))


def write_bad_and_odd(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Files a build must reject (bad) and unusual ones it must index (odd)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad: dict[str, Path] = {}
    full = io.BytesIO()
    picture(900, (200, 150)).save(full, "JPEG", quality=95)
    bad["truncated"] = folder / "truncated.jpg"
    bad["truncated"].write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    bad["random"] = folder / "random.jpg"
    bad["random"].write_bytes(np.random.default_rng(1).bytes(5000))
    bad["empty"] = folder / "empty.png"
    bad["empty"].write_bytes(b"")
    bad["text"] = folder / "notes.jpg"
    bad["text"].write_text("this is a text file, not a picture\n")
    bad["bomb"] = folder / "bomb.png"
    png_bomb(bad["bomb"])

    odd: dict[str, Path] = {}
    odd["one_pixel"] = folder / "one_pixel.png"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(odd["one_pixel"])
    odd["cmyk"] = folder / "cmyk.jpg"
    picture(901).convert("CMYK").save(odd["cmyk"], "JPEG")
    odd["palette_alpha"] = folder / "palette_alpha.png"
    pal = picture(902).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(odd["palette_alpha"], transparency=0)
    odd["sixteen_bit"] = folder / "sixteen_bit.png"
    grey16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(grey16).save(odd["sixteen_bit"])
    odd["animated"] = folder / "animated.gif"
    frames = [picture(903 + i).convert("P") for i in range(3)]
    frames[0].save(odd["animated"], save_all=True, append_images=frames[1:], duration=100)
    return bad, odd
