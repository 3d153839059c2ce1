"""What importing the command and the client costs: neither loads torch, open_clip or faiss."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env

HEAVY = ("torch", "open_clip", "faiss")


def loaded_after(code: str) -> list[str]:
    """Heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=cli_env(), timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["server.client", "evaluation.remote", "server.web.app",
                                    "server.web.runner", "cli.web"])
def test_client_modules_import_no_torch_or_faiss(module):
    assert loaded_after(f"import {module}") == []


def test_help_imports_no_torch_or_faiss():
    code = ("import contextlib, io, cli.main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, "
            "contextlib.suppress(SystemExit):\n"
            "    cli.main.main(['--help'])\n"
            "assert 'build' in out.getvalue() and 'serve' in out.getvalue()")
    assert loaded_after(code) == []


def test_probe_detects_a_heavy_import():
    """The check above can fail: importing the search module does load faiss."""
    assert "faiss" in loaded_after("import index.ann.search")


def test_every_subcommand_has_help():
    from cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"build", "serve", "query", "health", "eval", "web"} <= set(commands)
    for name, sub in commands.items():
        assert sub.format_help().startswith("usage: visearch " + name)
