from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, start_upstream


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up, stop = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield up
    stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Proxy]:
    """One real mitmdump with the shield addon and the test rules, per test module."""
    tmp = tmp_path_factory.mktemp("proxy")
    p = start_proxy(tmp, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                    upstream_ca=upstream.ca_file)
    yield p
    p.stop()


def client(proxy: Proxy, agent: str = "agent-httpx", timeout: float = 30) -> httpx.Client:
    return httpx.Client(proxy=proxy.url(agent), verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        trust_env=False, timeout=timeout)


def curl() -> str:
    path = shutil.which("curl")
    if not path:
        pytest.fail("curl is not installed: .ci/run installs it with apt-get")
    return path


def ca_path(proxy: Proxy) -> Path:
    return proxy.ca
