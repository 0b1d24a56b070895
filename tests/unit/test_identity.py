"""Identity changes on a running proxy: the htpasswd watcher with mitmproxy's real ProxyAuth."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mitmproxy.addons.proxyauth import ProxyAuth
from mitmproxy.test import taddons, tflow

from shield_addon import agents
from shield_addon.addons.identity import Identity, RefuseAll, htpasswd_file, sign_out, stamp


def test_only_the_htpasswd_form_names_a_file() -> None:
    assert htpasswd_file("@~/x.htpasswd") == Path("~/x.htpasswd").expanduser()
    for other in (None, "", "any", "alice:pw", "ldap:localhost:cn=a:pw:dc=x"):
        assert htpasswd_file(other) is None


def test_the_stamp_changes_with_every_rewrite(tmp_path: Path) -> None:
    path = agents.htpasswd_path(tmp_path)
    assert stamp(path) is None
    agents.add(tmp_path, "alice")
    first = stamp(path)
    assert first is not None and stamp(path) == first
    agents.rotate(tmp_path, "alice")  # same size, maybe the same mtime tick: a new file all the same
    assert stamp(path) != first
    second = stamp(path)
    with open(path, "a") as f:  # rewritten in place, as an editor might
        f.write("# note\n")
    assert stamp(path) != second


def test_sign_out_forgets_only_credentials_that_fail_and_checks_each_pair_once() -> None:
    calls: list[tuple[str, str]] = []

    def valid(user: str, password: str) -> bool:
        calls.append((user, password))
        return (user, password) == ("alice", "new")

    a, b, c = object(), object(), object()
    conns = {a: ("alice", "new"), b: ("alice", "old"), c: ("alice", "old")}
    assert sign_out(conns, valid) == 2
    assert conns == {a: ("alice", "new")}
    assert sorted(calls) == [("alice", "new"), ("alice", "old")]


def test_a_validator_that_raises_signs_out() -> None:
    def broken(user: str, password: str) -> bool:
        raise RuntimeError("ldap down")

    conns = {object(): ("bob", "x")}
    assert sign_out(conns, broken) == 1 and not conns


@pytest.fixture
def proxy(tmp_path: Path):
    tokens = {"alice": agents.add(tmp_path, "alice")}
    auth, identity = ProxyAuth(), Identity()
    with taddons.context(auth, identity) as tctx:
        tctx.configure(auth, proxyauth=f"@{agents.htpasswd_path(tmp_path)}")
        tctx.configure(identity, proxyauth=f"@{agents.htpasswd_path(tmp_path)}")
        identity.check()  # the first look after configure reads the file once more
        yield auth, identity, tokens, tmp_path


def connect(auth: ProxyAuth, user: str, password: str):
    """A CONNECT through the real ProxyAuth; the flow (its client connection is trusted if it passed)."""
    f = tflow.tflow()
    f.request.method = "CONNECT"
    f.request.headers["Proxy-Authorization"] = _basic(user, password)
    auth.http_connect(f)
    return f


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_added_rotated_and_removed_agents_count_after_one_check(proxy) -> None:
    auth, identity, tokens, confdir = proxy
    bob = agents.add(confdir, "bob")
    assert not auth.validator("bob", bob)
    assert identity.check() and auth.validator("bob", bob)
    assert not identity.check()  # nothing changed since

    tunnel = connect(auth, "alice", tokens["alice"])
    assert tunnel.response is None and tunnel.client_conn in auth.authenticated
    new = agents.rotate(confdir, "alice")
    assert identity.check()
    assert auth.validator("alice", new) and not auth.validator("alice", tokens["alice"])
    assert tunnel.client_conn not in auth.authenticated  # the open tunnel is signed out too

    inner = tflow.tflow()
    inner.client_conn = tunnel.client_conn
    auth.requestheaders(inner)  # the next request in that tunnel carries no credentials
    assert inner.response is not None and inner.response.status_code == 407

    agents.remove(confdir, "bob")
    assert identity.check() and not auth.validator("bob", bob)


def test_a_tunnel_of_an_agent_still_valid_stays_open(proxy) -> None:
    auth, identity, tokens, confdir = proxy
    tunnel = connect(auth, "alice", tokens["alice"])
    agents.add(confdir, "bob")
    assert identity.check()
    assert tunnel.client_conn in auth.authenticated


def test_an_unreadable_file_refuses_everyone_until_fixed(proxy) -> None:
    auth, identity, tokens, confdir = proxy
    path = agents.htpasswd_path(confdir)
    tunnel = connect(auth, "alice", tokens["alice"])
    os.replace(path, path.with_suffix(".bak"))
    assert identity.check()
    assert isinstance(auth.validator, RefuseAll) and not auth.authenticated
    assert not identity.check()  # still missing: not read again and again
    os.replace(path.with_suffix(".bak"), path)
    assert identity.check() and auth.validator("alice", tokens["alice"])
    assert tunnel.response is None


def test_other_proxyauth_forms_are_left_alone(tmp_path: Path) -> None:
    auth, identity = ProxyAuth(), Identity()
    with taddons.context(auth, identity) as tctx:
        tctx.configure(auth, proxyauth="any")
        tctx.configure(identity, proxyauth="any")
        assert not identity.check()
        assert auth.validator("anyone", "anything")
