"""`visearch repair`: mend what the stored vectors allow, then check again.

It points CURRENT at the newest intact version, rebuilds an unreadable or
inconsistent index file from the stored vectors (a new version), removes files
of killed writers and marks killed runs interrupted. A damaged catalog or lost
vector shards cannot be rebuilt from what is left: check says so.
"""

from __future__ import annotations

import logging

from common.errors import VisearchError
from index.ann import faiss_index as ann
from index.build.publish import IndexingOptions, publish_index
from index.check import Finding, check_directory
from index.store.atomic import reporting_disk_full, write_bytes_atomic
from index.store.contract import stored_identity
from index.store.directory import IndexDirectory
from index.store.vectors import remove_orphans

log = logging.getLogger("visearch.repair")


def repair_directory(directory: IndexDirectory, *, progress: bool = True
                     ) -> tuple[list[str], list[Finding]]:
    """What was done, and the findings of a check afterwards."""
    done: list[str] = []
    with directory.build_lock(), reporting_disk_full(directory.path):
        broken = {f.part for f in check_directory(directory) if not f.ok}
        if "catalog" in broken:
            raise VisearchError(f"the catalog of {directory.path} is missing or damaged; "
                                f"repair needs it: build again from the images into a new "
                                f"directory")
        catalog = directory.catalog()
        if catalog.mark_interrupted():
            done.append("marked killed runs interrupted")
        removed = remove_orphans(directory.vectors_dir, catalog.shards())
        if removed:
            done.append(f"removed {len(removed)} unrecorded vector files")
        if broken & {"current", "manifest"}:
            done.append(_point_current_at_newest(directory))
        if "index" in broken or (broken & {"current", "manifest"} and not _index_readable(
                directory)):
            identity = stored_identity(catalog)
            if identity is None:
                raise VisearchError("no model is recorded in the catalog: nothing to rebuild")
            run_id = catalog.start_run()
            result = publish_index(directory, catalog, identity,
                                   IndexingOptions(retrain=True, progress=progress), run_id)
            catalog.finish_run(run_id, "repaired", embedded=0, reused=0, failed=0)
            done.append(f"rebuilt the index from the stored vectors as version "
                        f"{result.manifest.version}")
        catalog.close()
    return done, check_directory(directory)


def _point_current_at_newest(directory: IndexDirectory) -> str:
    """CURRENT names the newest version whose manifest reads (its index may still be bad)."""
    for version in sorted((int(p.name[1:]) for p in directory.versions_dir.glob("v*")
                           if p.name[1:].isdigit()), reverse=True):
        try:
            directory.manifest(version)
        except VisearchError:
            continue
        write_bytes_atomic(directory.path / "CURRENT", f"v{version:06d}\n".encode())
        return f"CURRENT now names version {version}"
    raise VisearchError(f"no intact version is left in {directory.versions_dir}: run "
                        f"`visearch build` on the images again")


def _index_readable(directory: IndexDirectory) -> bool:
    try:
        ann.read_index(directory.index_path(directory.manifest()))
    except VisearchError:
        return False
    return True
