"""Helpers of the security tests: servers with security settings, secret files, and
throw-away certificates made with the `openssl` CLI (a CA, a server and a client, all EC
P-256 so they are fast to make, valid one day, for 127.0.0.1 and localhost only)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.app import SearchServer
from server.config import SecurityConfig, ServerConfig


@contextmanager
def running(index_dir: Path, *, load: bool = True, host: str = "127.0.0.1",
            **security: Any) -> Iterator[SearchServer]:
    """A server on port 0 with these SecurityConfig fields, stopped at once afterwards."""
    server = SearchServer(ServerConfig(index_dir=index_dir, host=host, port=0, device="cpu",
                                       drain_seconds=0, security=SecurityConfig(**security)))
    server.start()
    try:
        if load:
            server.load()
        yield server
    finally:
        server.stop(grace=0)


def secret(folder: Path, name: str, text: str) -> Path:
    """A file only its owner can read, as secrets should be."""
    path = folder / name
    path.write_text(text)
    path.chmod(0o600)
    return path

CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {name}
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

LEAF_EXTENSIONS = """\
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {usage}
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key(out: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", out.name, cwd=out.parent)
    out.chmod(0o600)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert, config = folder / f"{name}.key", folder / f"{name}.pem", folder / f"{name}.cnf"
    _key(key)
    config.write_text(CA_CONFIG.format(name=f"visearch test {name}"))
    _openssl("req", "-x509", "-new", "-key", key.name, "-config", config.name,
             "-extensions", "ca", "-days", "1", "-out", cert.name, cwd=folder)
    return cert, key


def _leaf(folder: Path, name: str, usage: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _key(key)
    (folder / f"{name}.ext").write_text(LEAF_EXTENSIONS.format(usage=usage))
    _openssl("req", "-new", "-key", key.name, "-subj", f"/CN={name}", "-out", f"{name}.csr",
             cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca[0].name, "-CAkey", ca[1].name,
             "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", cert.name,
             cwd=folder)
    return cert, key


def make_certificates(folder: Path) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "ca")
    other_ca, _ = _ca(folder, "other-ca")
    server = _leaf(folder, "server", "serverAuth", ca)
    client = _leaf(folder, "client", "clientAuth", ca)
    return Certificates(ca=ca[0], server_cert=server[0], server_key=server[1],
                        client_cert=client[0], client_key=client[1], other_ca=other_ca)
