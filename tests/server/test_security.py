"""Tokens, TLS and mutual TLS end to end: real servers on 127.0.0.1, real certificates made
in the test, the Python client as a user holds it; and the refusal to expose a plaintext port."""

from __future__ import annotations

import logging

import grpc
import pytest

from server.app import SearchServer
from server.auth import INVALID_TOKEN, MISSING_TOKEN
from server.client import SearchClient, text_request
from server.config import SecurityConfig, ServerConfig
from server.credentials import CredentialsError, is_loopback, target_host
from server.security import ChannelSecurity
from server.transport import ExposureError, check_exposure, check_settings
from tests.server.secure import make_certificates, running, secret

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return secret(tmp_path_factory.mktemp("secrets"), "tokens", "# readers\nalpha\nbeta\n")


def outcome(client: SearchClient, call: str = "search") -> grpc.StatusCode:
    """OK, or the status code the call failed with."""
    try:
        if call == "search":
            assert client.search_text("a red bicycle", k=3).hits
        elif call == "health":
            client.health()
        elif call == "batch":
            client.search_batch([text_request("a red bicycle", k=3)])
        else:
            getattr(client, call)()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def token_server(index_dir, tokens):
    with running(index_dir, token_file=tokens) as server:
        yield f"127.0.0.1:{server.port}"


def test_no_token_or_a_wrong_token_is_unauthenticated(token_server):
    for token, reason in ((None, MISSING_TOKEN), ("gamma", INVALID_TOKEN),
                          ("alph", INVALID_TOKEN)):
        with SearchClient(token_server, timeout=10, token=token) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.search_text("a red bicycle")
            assert info.value.code() == UNAUTHENTICATED and info.value.details() == reason
            assert outcome(client, "info") == outcome(client, "batch") == UNAUTHENTICATED


def test_each_of_several_tokens_is_accepted_for_every_call(token_server):
    for token in ("alpha", "beta"):
        with SearchClient(token_server, timeout=10, token=token) as client:
            assert outcome(client) == grpc.StatusCode.OK
            assert int(client.info()["vector_count"]) == 40
            assert all(not isinstance(r, Exception) and r.hits
                       for r in client.search_batch([text_request("x", k=2)] * 3))


def test_health_is_open_without_a_token_unless_configured(token_server, index_dir, tokens):
    with SearchClient(token_server, timeout=10) as client:
        assert client.health() == "SERVING"
    with running(index_dir, load=False, token_file=tokens, auth_health=True) as server:
        target = f"127.0.0.1:{server.port}"
        with SearchClient(target, timeout=10) as client:
            assert outcome(client, "health") == UNAUTHENTICATED
        with SearchClient(target, timeout=10, token="beta") as client:
            assert client.health() == "NOT_SERVING"


def test_tls_with_the_ca_succeeds_and_plaintext_or_another_ca_fails(index_dir, certs, tokens):
    with running(index_dir, tls_cert=certs.server_cert, tls_key=certs.server_key,
                 token_file=tokens) as server:
        port = server.port
        with SearchClient(f"127.0.0.1:{port}", timeout=10, tls_ca=certs.ca,
                          token="alpha") as client:
            assert outcome(client) == grpc.StatusCode.OK
        with SearchClient(f"localhost:{port}", timeout=10, tls_ca=str(certs.ca)) as client:
            assert outcome(client) == UNAUTHENTICATED  # TLS alone is no credential here
            assert client.health() == "SERVING"
        named = ChannelSecurity(tls_ca=certs.ca, server_name="localhost", token="beta")
        with SearchClient(f"127.0.0.1:{port}", timeout=10, security=named) as client:
            assert outcome(client) == grpc.StatusCode.OK
        for refused in (ChannelSecurity(token="alpha"),
                        ChannelSecurity(tls_ca=certs.other_ca, token="alpha"),
                        ChannelSecurity(tls_ca=certs.ca, server_name="elsewhere.test")):
            with SearchClient(f"127.0.0.1:{port}", timeout=5, security=refused) as client:
                assert outcome(client, "health") == UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate(index_dir, certs):
    with running(index_dir, tls_cert=certs.server_cert, tls_key=certs.server_key,
                 tls_client_ca=certs.ca) as server:
        target = f"127.0.0.1:{server.port}"
        with SearchClient(target, timeout=5, tls_ca=certs.ca) as client:
            assert outcome(client, "health") == UNAVAILABLE
        with SearchClient(target, timeout=10, tls_ca=certs.ca, tls_cert=certs.client_cert,
                          tls_key=certs.client_key) as client:
            assert outcome(client) == grpc.StatusCode.OK


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(index_dir, certs):
    with pytest.raises(CredentialsError, match="not the private key"):
        with running(index_dir, load=False, tls_cert=certs.server_cert,
                     tls_key=certs.client_key):
            pass


def test_refuses_a_non_loopback_address_without_tls_or_tokens(index_dir):
    with pytest.raises(ExposureError, match="--insecure") as info:
        SearchServer(ServerConfig(index_dir=index_dir, host="0.0.0.0", port=0))
    assert "without TLS or a token" in str(info.value)
    with running(index_dir, load=False, host="0.0.0.0", insecure=True) as server:
        assert server.port > 0  # stopped at once


@pytest.mark.parametrize(("host", "security", "allowed"), [
    ("127.0.0.1", {}, True), ("127.8.9.10", {}, True), ("::1", {}, True),
    ("[::1]", {}, True), ("localhost", {}, True),
    ("0.0.0.0", {}, False), ("[::]", {}, False), ("192.168.1.5", {}, False),
    ("search.example", {}, False),
    ("0.0.0.0", {"token_file": "t"}, True), ("0.0.0.0", {"tls_cert": "c", "tls_key": "k"}, True),
    ("0.0.0.0", {"write_token_file": "w"}, False), ("0.0.0.0", {"insecure": True}, True),
])
def test_which_addresses_need_tls_or_tokens(host, security, allowed):
    config = SecurityConfig(**security)
    if allowed:
        check_exposure(host, config)
    else:
        with pytest.raises(ExposureError, match="--insecure"):
            check_exposure(host, config)


@pytest.mark.parametrize(("security", "message"), [
    ({"tls_cert": "c"}, "--tls-cert and --tls-key go together"),
    ({"tls_key": "k"}, "--tls-cert and --tls-key go together"),
    ({"tls_client_ca": "ca"}, "needs TLS"),
    ({"auth_health": True}, "--auth-health needs --token-file"),
])
def test_settings_that_need_each_other(security, message):
    with pytest.raises(ExposureError, match=message):
        check_settings(SecurityConfig(**security))


def test_client_settings_are_checked(certs):
    with pytest.raises(TypeError):
        SearchClient("127.0.0.1:1", token="a", security=ChannelSecurity())
    with pytest.raises(CredentialsError, match="go together"):
        SearchClient("127.0.0.1:1", tls_cert=certs.client_cert)
    with pytest.raises(CredentialsError, match="not PEM"):
        SearchClient("127.0.0.1:1", tls_ca=certs.ca.with_suffix(".cnf"))
    with pytest.raises(CredentialsError, match="printable ASCII"):
        SearchClient("127.0.0.1:1", token="two words")
    assert "alpha" not in repr(ChannelSecurity(token="alpha"))


def test_client_warns_before_sending_a_token_in_the_clear(caplog):
    # channels connect lazily: nothing is contacted, the client is closed at once
    with caplog.at_level(logging.WARNING, logger="visearch.client"):
        SearchClient("127.0.0.1:1", token="alpha").close()
        assert not caplog.text
        SearchClient("192.0.2.1:50051", token="alpha").close()
    assert "without TLS" in caplog.text and "alpha" not in caplog.text


@pytest.mark.parametrize(("target", "host", "local"), [
    ("localhost:50051", "localhost", True), ("127.0.0.1:1", "127.0.0.1", True),
    ("[::1]:50051", "::1", True), ("dns:///search.example:443", "search.example", False),
    ("ipv4:10.0.0.1:50051", "10.0.0.1", False), ("unix:/run/visearch.sock", "localhost", True),
])
def test_target_host(target, host, local):
    assert target_host(target) == host and is_loopback(host) == local
