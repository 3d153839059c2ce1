"""Inputs found in the wild: names that are not UTF-8, special files, unreadable folders.

Each is one file's (or folder's) failure with its reason, or it indexes; none may
stop, hang or balloon a build. Real files, real builds with the untrained tiny model.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from embedder import EmbedderConfig
from embedder.config import DecodeLimits
from embedder.files import load_file
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions, NothingToIndexError
from index.build.sources import list_images
from index.store.catalog import ImageRecord
from tests.conftest import ROOT, cli_env

MB = 1 << 20
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2

TINY = EmbedderConfig(model="tiny", device="cpu")
LATIN1_NAME = b"caf\xe9.jpg"  # 'café' as old archives and unzipped Windows folders write it


def build(inputs, out, embedder, **kwargs):
    config = BuildConfig(inputs=tuple(str(p) for p in inputs), out=Path(out), embedder=TINY,
                         workers=0, indexing=IndexingOptions(progress=False), **kwargs)
    return run_build(config, embedder=embedder)


def copy_as(source: Path, folder: Path, raw_name: bytes) -> str:
    """Copy ``source`` to a file named by raw bytes; the path as Python names it."""
    target = os.path.join(os.fsencode(folder), raw_name)
    shutil.copy(source, target)
    return os.fsdecode(target)


def special_files(folder: Path, sparse_mb: int) -> dict[str, Path]:
    """A FIFO, a link to /dev/zero and a sparse file, each named like an image."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"fifo": folder / "p.jpg", "zero": folder / "z.jpg", "sparse": folder / "big.jpg"}
    os.mkfifo(files["fifo"])
    os.symlink("/dev/zero", files["zero"])
    subprocess.run(["truncate", "-s", f"{sparse_mb}M", str(files["sparse"])], check=True)
    return files


@contextmanager
def deadline(seconds: int):
    """Fail, instead of hanging the suite, when a read blocks (a FIFO) or never ends."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _without_root_override() -> None:
    """Run in a child before exec: drop root's power to read any directory, so that
    permissions bind as they do for every other user (tests run as root here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture()
def permissions_bind():
    """The preexec_fn for subprocesses that a chmod 000 directory keeps out (None when
    not root: permissions bind already); skips where root cannot give up the override."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_without_root_override,
                       check=True)
    except subprocess.SubprocessError:
        pytest.skip("root without CAP_SETPCAP: no directory is unreadable to this process")
    return _without_root_override


def locked_folder(parent: Path, image: Path) -> Path:
    """A directory holding an image, with no permissions at all."""
    locked = parent / "locked"
    locked.mkdir(parents=True)
    shutil.copy(image, locked / image.name)
    locked.chmod(0)
    return locked


def test_an_unreadable_directory_is_reported(tmp_path, photos, permissions_bind):
    folder = tmp_path / "tree"
    folder.mkdir()
    shutil.copy(photos[0], folder / photos[0].name)
    locked = locked_folder(folder / "sub", photos[1])
    lister = ("import json, sys; from index.build.sources import list_images; "
              "found = list_images(sys.argv[1:]); "
              "print(json.dumps([[f.path for f in found.files], found.missing]))")
    result = subprocess.run([sys.executable, "-c", lister, str(folder)], cwd=ROOT, env=cli_env(),
                            preexec_fn=permissions_bind, capture_output=True, text=True,
                            timeout=60, check=True)
    files, missing = json.loads(result.stdout)
    assert files == [str(folder / photos[0].name)]
    assert missing == [[str(locked), "cannot read directory: Permission denied"]]


def test_a_name_that_is_not_utf8_indexes_and_is_found(tmp_path, photos, tiny_embedder):
    folder = tmp_path / "archive"
    folder.mkdir()
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    odd = copy_as(photos[3], folder, LATIN1_NAME)
    report = build([folder], tmp_path / "idx", tiny_embedder)
    assert report.ingest.embedded == 4 and not report.failed
    searcher = Searcher(tmp_path / "idx")
    odd_id = searcher.catalog.ids_for_paths([odd])[odd]
    hits = searcher.search(searcher.store.get(np.array([odd_id])), SearchParams(k=1))
    assert searcher.paths(hits.ids[:, 0]) == {odd_id: odd}
    again = build([folder], tmp_path / "idx", tiny_embedder)  # known: skipped unread
    assert again.skipped == 4 and again.ingest.embedded == 0
    listed = tmp_path / "list.txt"
    listed.write_bytes(os.fsencode(odd) + b"\n")
    assert [f.path for f in list_images([f"@{listed}"]).files] == [odd]


def test_special_files_are_refused_on_the_open_descriptor(tmp_path, tiny_embedder):
    """What the reader does when a special file slips past the listing (swapped in since)."""
    files = special_files(tmp_path, sparse_mb=3)
    to_input = tiny_embedder.model_input(DecodeLimits(max_file_bytes=2 * MB))
    with deadline(20):
        reasons = {kind: load_file(ImageRecord(str(path), 0, 0), to_input)[0].error
                   for kind, path in files.items()}
    assert reasons == {"fifo": "not a regular file (FIFO)",
                       "zero": "not a regular file (character device)",
                       "sparse": "file is 3.0 MB, over --max-file-mb 2"}


def test_special_files_fail_alone_and_the_build_finishes(tmp_path, photos, tiny_embedder):
    folder = tmp_path / "mixed"
    files = special_files(folder, sparse_mb=3000)  # 3 GB, sparse: no disk, but huge to read
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    listed_fifo, given_zero = tmp_path / "q.jpg", tmp_path / "y.jpg"
    os.mkfifo(listed_fifo)
    os.symlink("/dev/zero", given_zero)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{listed_fifo}\n")
    start = time.monotonic()
    with deadline(30):
        report = build([folder, f"@{listed}", given_zero], tmp_path / "idx", tiny_embedder)
    assert time.monotonic() - start < 20
    assert report.ingest.embedded == 3
    assert dict(report.failed) == {str(files["fifo"]): "not a regular file (FIFO)",
                                   str(listed_fifo): "not a regular file (FIFO)",
                                   str(files["zero"]): "not a regular file (character device)",
                                   str(given_zero): "not a regular file (character device)",
                                   str(files["sparse"]): "file is 2.9 GB, over --max-file-mb 100"}


def test_a_file_at_the_cap_is_read_and_one_byte_more_is_not(tmp_path, photos, tiny_embedder):
    size = photos[0].stat().st_size
    record = ImageRecord(str(photos[0]), size, 0)
    at_cap = load_file(record, tiny_embedder.model_input(DecodeLimits(max_file_bytes=size)))
    assert at_cap[0].error is None and at_cap[1] is not None
    over = load_file(record, tiny_embedder.model_input(DecodeLimits(max_file_bytes=size - 1)))
    assert over[0].error is not None and over[0].error.startswith(f"file is {size / 1024:.1f} KB")


@pytest.mark.slow
def test_hostile_folder_through_the_cli(tmp_path, photos, permissions_bind):
    folder = tmp_path / "hostile"
    files = special_files(folder, sparse_mb=3000)
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    locked = locked_folder(folder, photos[4])
    odd = copy_as(photos[3], folder, LATIN1_NAME)
    broken = os.path.join(os.fsencode(folder), b"bad\xff.jpg")
    Path(os.fsdecode(broken)).write_bytes(b"not a picture")
    report_file = tmp_path / "report.json"
    code, stdout, stderr, peak_mb = run_measured(
        ["build", str(folder), "--out", str(tmp_path / "idx"), "--model", "tiny", "--workers",
         "0", "--quiet", "--max-file-mb", "100", "--report", str(report_file)], timeout=60,
        preexec_fn=permissions_bind)
    assert code == 0, stderr
    # torch and the model alone peak near 1.2 GB; reading the sparse file would add 3 GB.
    assert peak_mb < 2500, f"peak RSS {peak_mb:.0f} MB: a special or sparse file was read"
    expected = {
        f"{folder}/bad\\xff.jpg": "not an image, or a format Pillow cannot read",
        str(files["fifo"]): "not a regular file (FIFO)",
        str(files["zero"]): "not a regular file (character device)",
        str(files["sparse"]): "file is 2.9 GB, over --max-file-mb 100",
        str(locked): "cannot read directory: Permission denied",
    }
    failed = sorted(ln for ln in stderr.splitlines() if ln.startswith("failed: "))
    assert failed == sorted(f"failed: {path}: {reason}" for path, reason in expected.items())
    assert "failed 5" in stdout
    report = json.loads(report_file.read_text())
    assert report["embedded"] == 4
    assert {f["path"]: f["reason"] for f in report["failed"]} == expected
    [odd_entry] = [f for f in report["failed"] if "path_base64" in f]
    assert base64.b64decode(odd_entry["path_base64"]) == broken
    searcher = Searcher(tmp_path / "idx")
    assert odd in set(searcher.paths(searcher.catalog.live_ids()).values())


def run_measured(args: list[str], timeout: float, preexec_fn: Callable[[], None] | None = None
                 ) -> tuple[int, str, str, float]:
    """`visearch ARGS` under a C locale (printing must not depend on it): exit code,
    stdout, stderr and the child's peak RSS in MB; killed after ``timeout`` seconds."""
    env = cli_env() | {"LC_ALL": "C", "LANG": "C"}
    with open(os.devnull, "rb") as stdin, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                                stdin=stdin, stdout=out, stderr=err, preexec_fn=preexec_fn)
        end = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise AssertionError(f"visearch {' '.join(args)} ran over {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode("utf-8"), err.read().decode("utf-8"),
                usage.ru_maxrss / 1024)


def test_when_nothing_can_be_indexed_the_failures_travel_with_the_error(tmp_path,
                                                                       tiny_embedder):
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    with deadline(30), pytest.raises(NothingToIndexError, match="1 could not be read") as info:
        build([fifo], tmp_path / "idx", tiny_embedder)
    assert info.value.failed == [(str(fifo), "not a regular file (FIFO)")]
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    with pytest.raises(NothingToIndexError, match="all 2 files failed") as info:
        build([tmp_path], tmp_path / "idx", tiny_embedder)
    assert dict(info.value.failed) == {str(fifo): "not a regular file (FIFO)",
                                       str(tmp_path / "broken.jpg"):
                                       "not an image, or a format Pillow cannot read"}


@pytest.mark.slow
def test_when_every_file_fails_the_cli_still_prints_and_reports_them(tmp_path):
    folder = tmp_path / "all-bad"
    special_files(folder, sparse_mb=200)
    (folder / "broken.jpg").write_bytes(b"not a picture")
    report_file = tmp_path / "report.json"
    code, stdout, stderr, _ = run_measured(
        ["build", str(folder), "--out", str(tmp_path / "idx"), "--model", "tiny", "--workers",
         "0", "--quiet", "--report", str(report_file)], timeout=60)
    assert code == 1 and "Traceback" not in stderr
    assert "error: no image could be indexed: all 4 files failed" in stderr
    failed = [ln for ln in stderr.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 4 and f"failed: {folder}/p.jpg: not a regular file (FIFO)" in failed
    report = json.loads(report_file.read_text())
    assert report["error"] == "no image could be indexed: all 4 files failed"
    assert report["listed"] == 2 and len(report["failed"]) == 4
    assert {"path": str(folder / "broken.jpg"),
            "reason": "not an image, or a format Pillow cannot read"} in report["failed"]
