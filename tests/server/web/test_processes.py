"""The two ways to start the HTTP side, as a user starts them."""

from __future__ import annotations

import httpx
import pytest

from tests.server.web.processes import visearch_process


@pytest.mark.slow
def test_serve_with_http_port_answers_both_protocols(index_dir, corpus):
    with visearch_process("serve", str(index_dir), "--port", "0", "--device", "cpu",
                          "--grace", "1") as (url, _process):
        info = httpx.get(url + "v1/info").json()
        assert info["model"] == "tiny"
        with open(corpus[9], "rb") as handle:
            hits = httpx.post(url + "v1/search", files={"image": ("q", handle.read())}).json()
        assert hits["hits"][0]["path"] == corpus[9].name


def test_web_command_talks_to_a_separate_server(server, corpus):
    with visearch_process("web", "--server", f"127.0.0.1:{server.port}") as (url, _process):
        assert httpx.get(url + "healthz").json() == {"status": "SERVING"}
        body = httpx.post(url + "v1/search", json={"text": "stripes", "k": 3}).json()
        assert len(body["hits"]) == 3
        assert httpx.get(url).status_code == 200


def test_web_refuses_an_open_address_without_a_token():
    from tests.conftest import run_visearch

    result = run_visearch("web", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 2 and "--http-token-file" in result.stderr
