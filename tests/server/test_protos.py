"""The committed generated code is what protoc makes of the committed .proto."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_generated_code_is_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts/gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    generated = module.generate(tmp_path)
    assert generated, "protoc generated nothing"
    for path in generated:
        committed = ROOT / "protos" / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is not committed"
        assert committed.read_text() == path.read_text(), \
            f"{committed} is stale: run `make protos`"


def test_api_package_imports_without_path_hacks():
    from visearch.v1 import search_pb2, search_pb2_grpc

    assert search_pb2.DESCRIPTOR.package == "visearch.v1"
    assert Path(search_pb2.__file__).parent == ROOT / "protos" / "visearch" / "v1"
    assert hasattr(search_pb2_grpc, "VisualSearchStub")
