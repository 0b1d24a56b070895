"""The fallback: any HTTP API, judged by its method alone."""

from __future__ import annotations

import functools

from .base import Action, RequestView
from .common import method_type


def parse(req: RequestView, pinned: bool = False) -> Action:
    return _action(req.host, req.method)


# Building a frozen dataclass costs about 3 us, more than all the other parsers'
# checks together; Actions are immutable, so the common ones are shared.
@functools.lru_cache(maxsize=4096)
def _action(host: str, method: str) -> Action:
    return Action(service=host, action_type=method_type(method), operation=method.lower())
