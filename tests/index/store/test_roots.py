"""The build root: what clients see of a path, and how a later build widens it."""

from __future__ import annotations

from index.store.catalog import Catalog
from index.store.roots import build_root, relative_to, widen_root


def test_the_root_is_the_common_folder_and_widens(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert build_root(catalog) is None
    assert widen_root(catalog, ["/data/photos/cats/a.jpg", "/data/photos/dogs/b.jpg"]) == \
        "/data/photos"
    assert widen_root(catalog, ["/data/photos/cats/c.jpg"]) == "/data/photos"
    assert widen_root(catalog, []) == "/data/photos"
    assert widen_root(catalog, ["/data/more/x.png"]) == "/data"
    assert build_root(Catalog(tmp_path / "catalog.sqlite")) == "/data"


def test_paths_below_the_root_are_shown_relative():
    assert relative_to("/data/photos/cats/a.jpg", "/data/photos") == "cats/a.jpg"
    assert relative_to("/data/photosets/a.jpg", "/data/photos") == "/data/photosets/a.jpg"
    assert relative_to("/synthetic/0000001", "/data") == "/synthetic/0000001"  # a key
    assert relative_to("/a.jpg", "/") == "a.jpg"
    assert relative_to("/data/photos/x.jpg", None) == "/data/photos/x.jpg"
    assert relative_to("/data/caf\udce9.jpg", "/data") == "caf\udce9.jpg"
