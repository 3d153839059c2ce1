"""File names that are not UTF-8: kept exactly inside, shown readably outside."""

from __future__ import annotations

import json
import os

from common.paths import display_path, is_utf8, path_bytes

RAW = b"/photos/caf\xe9.jpg"  # Latin-1 'é', as old archives and Windows zips write it


def test_a_name_that_is_not_utf8_round_trips_and_displays_as_escaped_bytes():
    path = os.fsdecode(RAW)
    assert path_bytes(path) == RAW and not is_utf8(path)
    shown = display_path(path)
    assert shown == "/photos/caf\\xe9.jpg"
    shown.encode("utf-8")  # printable anywhere, storable as text
    json.dumps(shown, ensure_ascii=False).encode("utf-8")


def test_valid_names_are_shown_unchanged_and_odd_text_never_raises():
    assert display_path("/photos/café 北京.jpg") == "/photos/café 北京.jpg"
    assert is_utf8("/photos/café.jpg")
    assert display_path("lone \ud800 surrogate") == "lone \\ud800 surrogate"
