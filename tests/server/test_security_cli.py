"""The security options as an operator uses them: `visearch serve/query/health/eval`,
VISEARCH_TOKEN, and rotating tokens with SIGHUP on a running server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import pytest

from cli.args import TOKEN_ENV, channel_security
from cli.main import build_parser
from cli.main import main as visearch
from server.client import SearchClient
from server.security import ChannelSecurity
from tests.conftest import ROOT, cli_env, run_visearch
from tests.server.secure import make_certificates, running, secret


def env_with(token: str | None = None) -> dict[str, str]:
    env = cli_env()
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    return env


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secrets")
    return {"server": secret(folder, "tokens", "alpha\nbeta\n"),
            "client": secret(folder, "mine", "# my token\nbeta\n"),
            "wrong": secret(folder, "wrong", "gamma\n")}


@pytest.fixture(scope="module")
def tls_token_server(index_dir, certs, secrets):
    with running(index_dir, tls_cert=certs.server_cert, tls_key=certs.server_key,
                 token_file=secrets["server"]) as server:
        yield f"localhost:{server.port}"


def test_query_with_a_token_file_or_the_environment(tls_token_server, certs, secrets):
    query = ("query", "--server", tls_token_server, "--tls-ca", str(certs.ca), "--text",
             "a red bicycle", "-k", "2", "--json")
    refused = run_visearch(*query, env=env_with())
    assert refused.returncode == 1 and "UNAUTHENTICATED: missing bearer token" in refused.stderr
    assert run_visearch(*query, "--token-file", str(secrets["client"]), env=env_with(),
                        check=True).stdout.count('"path"') == 2
    assert run_visearch(*query, env=env_with("alpha"), check=True).stdout.count('"path"') == 2
    # the flag wins over the environment
    wrong_file = run_visearch(*query, "--token-file", str(secrets["wrong"]),
                              env=env_with("alpha"))
    assert wrong_file.returncode == 1 and "invalid token" in wrong_file.stderr


def test_health_command_over_tls(tls_token_server, certs):
    healthy = run_visearch("health", "--server", tls_token_server, "--tls-ca", str(certs.ca),
                           env=env_with())
    assert healthy.returncode == 0 and "SERVING" in healthy.stdout
    plaintext = run_visearch("health", "--server", tls_token_server, "--timeout", "2",
                             env=env_with())
    assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr


def test_eval_through_a_server_with_tls_and_a_token(tls_token_server, index_dir, certs,
                                                    secrets, capsys):
    args = ["eval", str(index_dir), "--k", "1,5", "--num-queries", "8", "--single-queries", "2",
            "--batch-size", "4", "--server", tls_token_server, "--tls-ca", str(certs.ca)]
    assert visearch([*args, "--token-file", str(secrets["client"])]) == 0
    assert f"through {tls_token_server}" in capsys.readouterr().out
    assert visearch(args) == 1
    assert f"{tls_token_server}: UNAUTHENTICATED: missing bearer token" in capsys.readouterr().err


def test_eval_security_options_need_server(tmp_path, secrets, capsys):
    assert visearch(["eval", str(tmp_path), "--token-file", str(secrets["client"])]) == 2
    assert "apply with --server" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["query", "health", "eval"])
def test_every_connecting_command_builds_the_same_channel_security(command, certs, secrets,
                                                                  monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, " from-env \n")
    head = {"query": ["query", "--text", "x"], "health": ["health"],
            "eval": ["eval", "idx", "--server", "h:1"]}[command]
    args = build_parser().parse_args([*head, "--tls-ca", str(certs.ca), "--tls-cert",
                                      str(certs.client_cert), "--tls-key", str(certs.client_key),
                                      "--tls-server-name", "search.internal"])
    assert channel_security(args) == ChannelSecurity(
        tls_ca=certs.ca, tls_cert=certs.client_cert, tls_key=certs.client_key,
        server_name="search.internal", token="from-env")
    args = build_parser().parse_args([*head, "--tls", "--token-file", str(secrets["client"])])
    assert channel_security(args) == ChannelSecurity(tls=True, token="beta")


def test_serve_refuses_an_open_plaintext_port_before_loading(index_dir):
    result = run_visearch("serve", str(index_dir), "--host", "0.0.0.0", "--port", "0",
                          timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "refusing to listen on 0.0.0.0 without TLS or a token" in result.stderr
    assert "--insecure" in result.stderr


def test_serve_refuses_an_unusable_token_file(index_dir, tmp_path):
    empty = secret(tmp_path, "empty", "# nothing yet\n")
    result = run_visearch("serve", str(index_dir), "--port", "0", "--token-file", str(empty),
                          timeout=120)
    assert result.returncode == 1 and "holds no tokens" in result.stderr
    missing = run_visearch("serve", str(index_dir), "--port", "0", "--token-file",
                           str(tmp_path / "absent"), timeout=120)
    assert missing.returncode == 1 and "cannot read token file" in missing.stderr


def _status(target: str, token: str) -> grpc.StatusCode:
    with SearchClient(target, timeout=10, token=token) as client:
        try:
            client.search_text("a red bicycle", k=1)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _until(predicate, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sighup_reloads_the_token_file(index_dir, tmp_path):
    tokens = secret(tmp_path, "tokens", "old-token\n")
    port_file, log = tmp_path / "port", tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", str(index_dir), "--port", "0",
             "--port-file", str(port_file), "--device", "cpu", "--token-file", str(tokens),
             "--grace", "1"], cwd=ROOT, env=env_with(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        _until(lambda: port_file.exists() or proc.poll() is not None, "the port file", 120)
        assert proc.poll() is None, log.read_text()
        target = f"127.0.0.1:{port_file.read_text().strip()}"
        assert _status(target, "old-token") == grpc.StatusCode.OK
        tokens.write_text("# rotated\nnew-token\n")
        proc.send_signal(signal.SIGHUP)
        _until(lambda: _status(target, "new-token") == grpc.StatusCode.OK, "the new token")
        assert _status(target, "old-token") == grpc.StatusCode.UNAUTHENTICATED
        tokens.write_text("")  # a botched rotation: the loaded tokens stay
        proc.send_signal(signal.SIGHUP)
        _until(lambda: "token reload failed" in log.read_text(), "the failed reload")
        assert _status(target, "new-token") == grpc.StatusCode.OK
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "reloaded 1 token(s)" in log.read_text()
