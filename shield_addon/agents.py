"""Per-agent proxy credentials: an htpasswd file (bcrypt) that mitmproxy's proxyauth reads.

A running proxy follows every change within a second (shield_addon.addons.identity): an
added agent gets in, a removed or rotated token is refused, in tunnels already open too."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import bcrypt

FILE = "shield-agents.htpasswd"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class AgentError(ValueError):
    pass


def htpasswd_path(confdir: Path) -> Path:
    return confdir / FILE


def _read(confdir: Path) -> dict[str, str]:
    path = htpasswd_path(confdir)
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            name, hashed = line.split(":", 1)
            entries[name] = hashed
    return entries


def _write(confdir: Path, entries: dict[str, str]) -> None:
    confdir.mkdir(parents=True, exist_ok=True)
    path = htpasswd_path(confdir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{n}:{h}\n" for n, h in entries.items())
    os.replace(tmp, path)


def list_agents(confdir: Path) -> list[str]:
    return sorted(_read(confdir))


def new_token() -> str:
    """A random token that cannot be taken for a command-line option."""
    while (token := secrets.token_urlsafe(24)).startswith("-"):
        pass
    return token


def add(confdir: Path, name: str) -> str:
    """Create an agent; return its token. Only the bcrypt hash is stored."""
    if not NAME.match(name):
        raise AgentError(f"agent name {name!r}: use letters, digits and _ . @ - (at most 64)")
    entries = _read(confdir)
    if name in entries:
        raise AgentError(f"agent {name!r} exists; remove it first to issue a new token")
    token = new_token()
    # $2b$ is what both passlib (mitmproxy 11) and mitmproxy 12's own htpasswd reader accept.
    entries[name] = bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=10)).decode()
    _write(confdir, entries)
    return token


def remove(confdir: Path, name: str) -> None:
    entries = _read(confdir)
    if name not in entries:
        raise AgentError(f"no agent {name!r}")
    del entries[name]
    _write(confdir, entries)


def rotate(confdir: Path, name: str) -> str:
    """A new token for an existing agent; the old one stops working at once."""
    entries = _read(confdir)
    if name not in entries:
        raise AgentError(f"no agent {name!r}")
    token = new_token()
    entries[name] = bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=10)).decode()
    _write(confdir, entries)
    return token


SHELLS = ("bash", "fish", "powershell")


def env_vars(name: str, token: str, host: str, port: int, ca: Path, no_proxy: str = "") -> list[tuple[str, str]]:
    """What an agent's environment needs: the proxy with its credentials, and trust in
    the proxy's CA for every common client."""
    from urllib.parse import quote

    proxy = f"http://{quote(name, safe='')}:{quote(token, safe='')}@{host}:{port}"
    ca_file = str(ca)
    return [
        ("HTTPS_PROXY", proxy), ("HTTP_PROXY", proxy), ("https_proxy", proxy), ("http_proxy", proxy),
        ("NO_PROXY", no_proxy), ("no_proxy", no_proxy),
        ("SSL_CERT_FILE", ca_file),  # Python's ssl, httpx, openai, Go
        ("REQUESTS_CA_BUNDLE", ca_file),  # requests
        ("CURL_CA_BUNDLE", ca_file),  # curl
        ("NODE_EXTRA_CA_CERTS", ca_file), ("NODE_USE_ENV_PROXY", "1"),  # Node 24+: fetch honours the proxy vars
        ("GIT_SSL_CAINFO", ca_file),  # git
        ("AWS_CA_BUNDLE", ca_file),  # AWS CLI, boto3
    ]


def env_lines(pairs: list[tuple[str, str]], shell: str = "bash") -> list[str]:
    if shell == "fish":
        return [f"set -gx {k} '{v.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'" for k, v in pairs]
    if shell == "powershell":
        return [f"$env:{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in pairs]
    return [f"export {k}='{v.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'" for k, v in pairs]
