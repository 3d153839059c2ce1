"""Publish a measured setting as the index's default nprobe and refine factor."""

from __future__ import annotations

from common.errors import VisearchError
from evaluation.fidelity import Setting
from index.ann.tuning import Tuned, tuned_fields
from index.store.atomic import reporting_disk_full
from index.store.directory import IndexDirectory
from index.store.manifest import Manifest


class IndexChangedError(VisearchError):
    """A new version was published while the evaluation ran; its numbers describe the old one."""


def apply_setting(directory: IndexDirectory, measured_version: int, setting: Setting) -> Manifest:
    """A new version sharing the trained index file, with ``setting`` as its defaults."""
    with directory.build_lock(), reporting_disk_full(directory.path):
        current = directory.manifest()
        if current.version != measured_version:
            raise IndexChangedError(f"the index changed to version {current.version} during "
                                    f"the evaluation; run it again")
        return directory.republish(current, default_nprobe=setting.nprobe,
                                   refine_factor=setting.refine)


def apply_tuned(directory: IndexDirectory, measured_version: int, tuned: Tuned) -> Manifest:
    """A new version sharing the trained index file, with the self-tuner's choice and the
    recall it measured as its defaults (the same fields a build records)."""
    with directory.build_lock(), reporting_disk_full(directory.path):
        current = directory.manifest()
        if current.version != measured_version:
            raise IndexChangedError(f"the index changed to version {current.version} during "
                                    f"the evaluation; run it again")
        return directory.republish(current, **tuned_fields(tuned))
