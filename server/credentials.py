"""Reading the secrets both ends use: PEM files and bearer-token files, and what counts as local.

Light on purpose (no grpc, torch or faiss): the client, the command line and the
server's start-up checks all read these before anything heavy loads.

A token file holds one token per line; blank lines and lines starting with ``#``
are ignored. A token is one word of printable ASCII, since gRPC sends it as
ordinary (non-binary) metadata.
"""

from __future__ import annotations

import ipaddress
import logging
import stat
from pathlib import Path

from common.errors import VisearchError

log = logging.getLogger("visearch.security")

TOKEN_HINT = "one token per line, '#' starts a comment; make one with `openssl rand -hex 32`"


class CredentialsError(VisearchError):
    """A certificate, key or token file that cannot be used as given."""


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file, or an error naming the file and what it was meant to be."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise CredentialsError(f"the {what} {path} is not PEM (no '-----BEGIN' line)")
    return data


def check_token(token: str, source: str) -> str:
    """``token`` if gRPC can send it as a bearer token; otherwise an error naming ``source``."""
    if not token or not all(33 <= ord(c) <= 126 for c in token):
        raise CredentialsError(f"{source}: a token is one word of printable ASCII characters, "
                               "without spaces")
    return token


def read_token_file(path: Path) -> list[str]:
    """Every token in ``path``; an empty file is refused, since it would lock everyone out."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CredentialsError(f"token file {path} is not UTF-8 text") from exc
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.append(check_token(line, f"token file {path}, line {number}"))
    if not tokens:
        raise CredentialsError(f"token file {path} holds no tokens ({TOKEN_HINT})")
    _warn_if_world_readable(path)
    return tokens


def read_client_token(path: Path) -> str:
    """The first token of a token file: a client sends one."""
    return read_token_file(path)[0]


def _warn_if_world_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning("token file %s is readable by every user of this machine; "
                    "`chmod 600 %s` keeps it to its owner", path, path)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.

    Any other name counts as reachable from outside, since it may resolve anywhere.
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def target_host(target: str) -> str:
    """The host part of a gRPC target such as ``host:port``, ``[::1]:50051`` or
    ``dns:///host:port``; ``localhost`` for ``unix:`` sockets, which never leave the machine."""
    if target.startswith("unix:"):
        return "localhost"
    address = target
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        if address.startswith(scheme):
            address = address[len(scheme):].rsplit("/", 1)[-1]
            break
    if address.startswith("["):
        return address[1:address.find("]")]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address
