"""Agent identity follows the htpasswd file while the proxy runs.

mitmproxy's proxyauth reads an `@htpasswd` file once, when the option is set, and trusts a
connection for good after its CONNECT was authenticated. So `shield agents add/remove/rotate`
would only count after a restart, and a removed or rotated token would keep working inside
every tunnel already open. This addon watches the file (identity, size, mtime) a few times
a second; when it changes, proxyauth reads it again and every open connection whose
credentials no longer pass is signed out: its next request gets 407 like any stranger.

A file that cannot be read any more (deleted, malformed) refuses everyone until it is fixed:
keeping the old list would keep revoked agents in.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from shield_addon import agents

log = logging.getLogger("shield")

Stamp = tuple[int, int, int, int] | None  # None: no file there
UNSEEN = (-1, -1, -1, -1)
POLL_SECONDS = 0.25  # a change counts within a second, with room for a busy event loop


def htpasswd_file(proxyauth: str | None) -> Path | None:
    """The file behind proxyauth's `@path` form; None for `any`, `user:pass`, LDAP or off."""
    if not proxyauth or not proxyauth.startswith("@"):
        return None
    return Path(proxyauth[1:]).expanduser()


def stamp(path: Path) -> Stamp:
    """What changes whenever the file is rewritten: `shield agents` replaces it (new inode),
    an editor may rewrite it in place (size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def sign_out(authenticated: MutableMapping[Any, tuple[str, str]], valid: Callable[[str, str], bool]) -> int:
    """Forget the connections whose (user, password) no longer pass; how many were forgotten.
    Each distinct pair is checked once: a bcrypt check costs tens of milliseconds."""
    verdicts: dict[tuple[str, str], bool] = {}
    gone = 0
    for conn, creds in list(authenticated.items()):
        key = (creds[0], creds[1])
        if key not in verdicts:
            try:
                verdicts[key] = bool(valid(*key))
            except Exception:  # noqa: BLE001 - a validator that fails refuses, as proxyauth does
                verdicts[key] = False
        if not verdicts[key]:
            authenticated.pop(conn, None)
            gone += 1
    return gone


class RefuseAll:
    """The validator while the htpasswd file cannot be read: nobody gets in."""

    def __call__(self, username: str, password: str) -> bool:
        return False


class Identity:
    def __init__(self) -> None:
        self.seen: Stamp = UNSEEN
        self.path: Path | None = None
        self._task: asyncio.Task | None = None

    def configure(self, updated: set[str]) -> None:
        if "proxyauth" in updated:
            self.path = htpasswd_file(ctx.options.proxyauth)
            # proxyauth has just read the file; stamping it now could miss a change made
            # in between, so the first check reads it once more.
            self.seen = UNSEEN

    def running(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch())

    def done(self) -> None:
        if self._task:
            self._task.cancel()

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad read
                log.exception("shield: could not reload the agents file")

    def check(self) -> bool:
        """Reload if the file changed since the last look; True if it did."""
        if self.path is None:
            return self.adopt()
        now = stamp(self.path)
        if now == self.seen:
            return False
        first = self.seen == UNSEEN
        self.seen = now
        self.reload(announce=not first)
        return True

    def adopt(self) -> bool:
        """A proxy started without agents (loopback, no credentials) turns credentials on when
        the first agent is added to its confdir: from then on every agent must name itself."""
        if ctx.options.proxyauth or "confdir" not in ctx.options:
            return False
        path = agents.htpasswd_path(Path(ctx.options.confdir).expanduser())
        if stamp(path) is None or not agents.list_agents(path.parent):
            return False
        log.warning("shield: agents defined in %s: the proxy now requires their credentials", path)
        ctx.options.update(proxyauth=f"@{path}")
        return True

    def reload(self, announce: bool = True) -> None:
        auth = ctx.master.addons.get("proxyauth")
        if auth is None:
            return
        try:
            auth.configure({"proxyauth"})  # builds a fresh validator from the option, as at start
        except exceptions.OptionsError as e:
            auth.validator = RefuseAll()
            log.error("shield: agents file %s unreadable (%s): every agent is refused until it is fixed", self.path, e)
        if auth.validator is None:
            return
        gone = sign_out(auth.authenticated, auth.validator)
        if announce or gone:
            log.warning("shield: agents file %s changed: reloaded%s", self.path,
                        f"; {gone} open connection(s) signed out" if gone else "")
