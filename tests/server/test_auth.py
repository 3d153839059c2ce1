"""Token files, the token store, and which calls the policy lets through (no model needed)."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from visearch.v1 import search_pb2, search_pb2_grpc

from server.auth import (
    INVALID_TOKEN,
    MISSING_TOKEN,
    NEEDS_WRITE_TOKEN,
    WRITE_METHODS,
    AuthPolicy,
    TokenStore,
    auth_policy,
    bearer_token,
)
from server.callpath import CallInterceptor
from server.config import SecurityConfig
from server.credentials import CredentialsError, read_client_token, read_token_file
from server.servicer import VisualSearchServicer
from tests.server.secure import secret

SEARCH = "/visearch.v1.VisualSearch/Search"
INFO = "/visearch.v1.VisualSearch/Info"
HEALTH = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def bearer(token: str) -> list[tuple[str, str]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {token}")]


def test_token_file_skips_comments_and_blank_lines(tmp_path):
    path = secret(tmp_path, "t", "# rotated 2024-05\n\n  alpha  \n#beta\nga-mma_1.~\n")
    assert read_token_file(path) == ["alpha", "ga-mma_1.~"]
    assert read_client_token(path) == "alpha"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # another\n"])
def test_an_empty_token_file_is_refused(tmp_path, text):
    with pytest.raises(CredentialsError, match="holds no tokens"):
        read_token_file(secret(tmp_path, "t", text))


@pytest.mark.parametrize("line", ["two words", "tab\tinside", "caf\u00e9"])
def test_a_token_must_be_one_printable_ascii_word(tmp_path, line):
    with pytest.raises(CredentialsError, match="line 2"):
        read_token_file(secret(tmp_path, "t", f"ok\n{line}\n"))


def test_a_missing_token_file_names_the_path(tmp_path):
    with pytest.raises(CredentialsError, match=r"cannot read token file .*nope"):
        read_token_file(tmp_path / "nope")


def test_a_world_readable_token_file_is_used_with_a_warning(tmp_path, caplog):
    path = secret(tmp_path, "t", "alpha\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="visearch.security"):
        assert read_token_file(path) == ["alpha"]
    assert "chmod 600" in caplog.text


def test_store_accepts_each_of_several_tokens_and_nothing_else(tmp_path):
    store = TokenStore(secret(tmp_path, "t", "alpha\nbeta\ngamma\n"))
    assert len(store) == 3
    assert all(store.accepts(t) for t in ("alpha", "beta", "gamma"))
    assert not any(store.accepts(t) for t in ("", "alph", "alphaa", "ALPHA", "beta "))


def test_reload_swaps_tokens_and_a_failed_reload_keeps_the_old_ones(tmp_path, caplog):
    path = secret(tmp_path, "t", "old\n")
    policy = AuthPolicy(read=TokenStore(path))
    path.write_text("new\n")
    policy.reload()
    assert policy.check(SEARCH, bearer("new")) is None
    assert policy.check(SEARCH, bearer("old")) == (UNAUTHENTICATED, INVALID_TOKEN)
    path.write_text("# emptied by mistake\n")
    with caplog.at_level(logging.ERROR, logger="visearch.server"):
        policy.reload()
    assert "keeping the 1 tokens loaded before" in caplog.text and "holds no tokens" in caplog.text
    assert policy.check(SEARCH, bearer("new")) is None


@pytest.mark.parametrize(("metadata", "token"), [
    ([("authorization", "Bearer abc")], "abc"),
    ([("authorization", "bearer   abc ")], "abc"),
    ([("authorization", "Basic abc")], None),
    ([("authorization", "Bearer")], None),
    ([("x-other", "Bearer abc")], None),
    ([], None),
])
def test_bearer_token_parsing(metadata, token):
    assert bearer_token(metadata) == token


def test_reads_need_a_valid_token_and_health_stays_open(tmp_path):
    policy = AuthPolicy(read=TokenStore(secret(tmp_path, "t", "alpha\nbeta\n")))
    assert policy.check(SEARCH, []) == (UNAUTHENTICATED, MISSING_TOKEN)
    assert policy.check(SEARCH, [("authorization", "Basic alpha")]) == (UNAUTHENTICATED,
                                                                        MISSING_TOKEN)
    assert policy.check(SEARCH, bearer("wrong")) == (UNAUTHENTICATED, INVALID_TOKEN)
    assert policy.check(SEARCH, bearer("beta")) is None
    assert policy.check(HEALTH, []) is None and policy.check(REFLECTION, []) is None
    closed = AuthPolicy(read=policy.read, auth_health=True)
    assert closed.check(HEALTH, []) == (UNAUTHENTICATED, MISSING_TOKEN)
    assert closed.check(REFLECTION, bearer("wrong")) == (UNAUTHENTICATED, INVALID_TOKEN)
    assert closed.check(HEALTH, bearer("alpha")) is None


def test_write_methods_need_a_write_token_when_a_write_file_is_given(tmp_path):
    read = TokenStore(secret(tmp_path, "r", "reader\n"))
    write = TokenStore(secret(tmp_path, "w", "writer\n"))
    upsert = "/visearch.v1.VisualSearch/Upsert"
    policy = AuthPolicy(read=read, write=write, write_methods=frozenset({upsert}))
    assert policy.check(upsert, []) == (UNAUTHENTICATED, MISSING_TOKEN)
    assert policy.check(upsert, bearer("reader")) == (grpc.StatusCode.PERMISSION_DENIED,
                                                      NEEDS_WRITE_TOKEN)
    assert policy.check(upsert, bearer("nobody")) == (UNAUTHENTICATED, INVALID_TOKEN)
    assert policy.check(upsert, bearer("writer")) is None
    assert policy.check(SEARCH, bearer("reader")) is None
    assert policy.check(SEARCH, bearer("writer")) is None  # write tokens also read
    # no read file: reads are open, writes still need a write token
    writes_only = AuthPolicy(write=write, write_methods=frozenset({upsert}))
    assert writes_only.check(SEARCH, []) is None
    assert writes_only.check(upsert, bearer("reader")) == (UNAUTHENTICATED, INVALID_TOKEN)
    # no write file: a write needs an ordinary token
    reads_only = AuthPolicy(read=read, write_methods=frozenset({upsert}))
    assert reads_only.check(upsert, bearer("reader")) is None
    assert reads_only.check(upsert, []) == (UNAUTHENTICATED, MISSING_TOKEN)


def test_no_write_methods_exist_yet_and_no_token_file_means_no_policy():
    assert all(m.startswith("/visearch.v1.VisualSearch/") for m in WRITE_METHODS)
    assert auth_policy(SecurityConfig()) is None


@pytest.fixture()
def guarded(tmp_path):
    """A real gRPC server with the server's call path, Info classified as a write for the test and
    health closed, so a refused streaming call is tested too."""
    policy = AuthPolicy(read=TokenStore(secret(tmp_path, "r", "reader\n")),
                        write=TokenStore(secret(tmp_path, "w", "writer\n")),
                        auth_health=True, write_methods=frozenset({INFO}))
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[CallInterceptor(auth=policy)])
    search_pb2_grpc.add_VisualSearchServicer_to_server(VisualSearchServicer(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0)


def _code(call, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        call(metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_interceptor_refuses_each_call_shape_before_the_servicer(guarded):
    stub = search_pb2_grpc.VisualSearchStub(guarded)
    search = lambda md: stub.Search(search_pb2.SearchRequest(text="x"), metadata=md,  # noqa: E731
                                    timeout=5)
    info = lambda md: stub.Info(search_pb2.InfoRequest(), metadata=md, timeout=5)  # noqa: E731
    # the servicer has no index loaded, so a call that passes the check gets UNAVAILABLE
    assert _code(search, None) == UNAUTHENTICATED
    assert _code(search, "writer") == grpc.StatusCode.UNAVAILABLE
    assert _code(info, "reader") == grpc.StatusCode.PERMISSION_DENIED
    assert _code(info, "writer") == grpc.StatusCode.UNAVAILABLE
    health_stub = health_pb2_grpc.HealthStub(guarded)
    refused = health_stub.Watch(health_pb2.HealthCheckRequest(), timeout=5)
    with pytest.raises(grpc.RpcError) as info_:
        next(refused)
    assert info_.value.code() == UNAUTHENTICATED and info_.value.details() == MISSING_TOKEN
    watch = health_stub.Watch(health_pb2.HealthCheckRequest(), timeout=5,
                              metadata=bearer("reader"))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_a_refused_call_gets_a_request_id_and_is_counted(tmp_path):
    """The call path is one layer: a call the token check refuses is still given an id
    and counted, as every call is, and its request is never parsed."""
    from server.metrics import ServerMetrics

    metrics = ServerMetrics()
    path = CallInterceptor(metrics=metrics, auth=AuthPolicy(
        read=TokenStore(secret(tmp_path, "r", "reader\n"))))
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[path])
    search_pb2_grpc.add_VisualSearchServicer_to_server(VisualSearchServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = channel.unary_unary(INFO)  # raw bytes: not a valid InfoRequest
            with pytest.raises(grpc.RpcError) as refused:
                info(b"\xff\xff", timeout=5, metadata=(("x-request-id", "r-1"),))
            stub = search_pb2_grpc.VisualSearchStub(channel)
            for _ in range(2):  # the servicer has nothing loaded: UNAVAILABLE, after auth
                with pytest.raises(grpc.RpcError) as passed:
                    stub.Info(search_pb2.InfoRequest(), timeout=5, metadata=bearer("reader"))
    finally:
        server.stop(0)
    assert refused.value.code() == UNAUTHENTICATED
    assert dict(refused.value.trailing_metadata())["x-request-id"] == "r-1"
    assert passed.value.code() == grpc.StatusCode.UNAVAILABLE
    count = metrics.registry.get_sample_value
    assert count("visearch_requests_total",
                 {"method": "VisualSearch/Info", "code": "UNAUTHENTICATED"}) == 1
    assert count("visearch_requests_total",
                 {"method": "VisualSearch/Info", "code": "UNAVAILABLE"}) == 2
    assert list(path._wrapped) == [INFO]  # wrapped once, reused for the second call
