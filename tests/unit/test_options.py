"""Every option agent-shield declares can be given on the command line: mitmproxy's `--set`
parses only some option types (a float option loads, then fails on its first `--set`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from mitmproxy import optmanager

from shield_addon import addon

SET_PARSES = (str, int, bool, Optional[str], Sequence[str])  # noqa: UP045  # mitmproxy's own spelling


def test_every_shield_option_is_of_a_type_set_can_parse() -> None:
    options = optmanager.OptManager()

    class Loader:
        def add_option(self, name: str, typespec: type, default: object, help: str, choices: object = None) -> None:
            options.add_option(name, typespec, default, help, choices)  # type: ignore[arg-type]

    for a in addon.addons:  # what `shield run` loads
        if hasattr(a, "load"):
            a.load(Loader())
    ours = {name: options._options[name] for name in options.keys() if name.startswith("shield_")}
    assert len(ours) > 20
    assert {name: o.typespec for name, o in ours.items() if o.typespec not in SET_PARSES} == {}
    for name, o in ours.items():  # and the default, spelled as on a command line, parses back
        if o.typespec in (str, int, bool):
            options.set(f"{name}={str(o.default).lower() if o.typespec is bool else o.default}")
            assert getattr(options, name) == o.default
