"""The web application against the real gRPC server of tests/server/conftest.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.client import SearchClient
from server.web.app import create_app
from server.web.config import WebConfig


@pytest.fixture()
def web(server):
    with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client, \
            TestClient(create_app(client, WebConfig())) as http:
        yield http


def app_for(target: str, config: WebConfig = WebConfig(), **client_options) -> TestClient:
    """A TestClient of an app whose gRPC client has these options (close both with .close())."""
    client = SearchClient(target, timeout=5, **client_options)
    http = TestClient(create_app(client, config))
    http.grpc_client = client  # type: ignore[attr-defined]
    return http


def close(http: TestClient) -> None:
    http.close()
    http.grpc_client.close()  # type: ignore[attr-defined]
