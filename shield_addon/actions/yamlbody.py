"""YAML request bodies read as the plain data a JSON body gives, bounded against hostile YAML.

Kubernetes reads YAML with a YAML 1.1 reader (go-yaml v2 under sigs.k8s.io/yaml), as PyYAML
does: `yes`/`on` are booleans, `010` is 8. Reading it the way the main YAML server does means a
`json:` rule sees the value that server will act on. Keys become text as they do on their way
to JSON in sigs.k8s.io/yaml (`1` -> "1", `on` -> "true"); timestamps and binary stay text.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MantissaNoDotYAML1_1Warning, YAMLError

# `0e5` is a float to go-yaml and to us; ruamel only warns that 1.1 wants a dot. A warning per
# request would be noise in the proxy's log and cost time.
warnings.filterwarnings("ignore", category=MantissaNoDotYAML1_1Warning)

Decoded = tuple[tuple[Any, ...], frozenset[str]]


class _Constructor(SafeConstructor):
    """Safe construction (no Python objects), last duplicate key wins like Go, and a record of
    every duplicate, exact or by case."""

    duplicates = False

    def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any) -> bool:
        if key in mapping:
            self.duplicates = True
        return True  # ruamel keeps the first when duplicates are allowed; servers keep the last

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        mapping = super().construct_mapping(node, deep=deep)
        keys = [_key_text(k) for k in mapping]
        if len(set(keys)) != len(keys) or len({k.casefold() for k in keys}) != len(keys):
            self.duplicates = True
        return dict(zip(keys, mapping.values(), strict=True))


def _key_text(key: Hashable) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


# Timestamps and !!binary are text to a JSON reader; a datetime would be neither JSON nor a rule's text.
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
_Constructor.add_constructor("tag:yaml.org,2002:binary", SafeConstructor.construct_yaml_str)
# A !!set is a mapping to nulls in YAML; read it as one rather than as a Python set.
_Constructor.add_constructor("tag:yaml.org,2002:set", SafeConstructor.construct_yaml_map)


def _loader() -> tuple[YAML, _Constructor]:
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 1)
    yaml.Constructor = _Constructor
    return yaml, yaml.constructor


def decode_yaml(body: bytes, limit: int, expanded_nodes: int) -> Decoded:
    """Every non-empty document of `body` and the flags of how it was read. Past `limit`
    bytes, an alias bomb, a cycle or absurd nesting: no documents and `body_unparsed`."""
    if len(body) > limit:
        return (), frozenset({"body_too_large", "body_unparsed"})
    yaml, constructor = _loader()  # a loader keeps state: one per body
    try:
        docs = tuple(d for d in yaml.load_all(body) if d is not None)
    except (YAMLError, ValueError, TypeError, RecursionError):
        return (), frozenset({"body_unparsed"})
    if expanded_size(docs, expanded_nodes + len(body)) is None:
        return (), frozenset({"body_unparsed"})
    flags = set()
    if constructor.duplicates:
        flags.add("duplicate_keys")
    if len(docs) > 1:
        flags.add("multi_document")
    return docs, frozenset(flags)


def expanded_size(doc: Any, limit: int) -> int | None:
    """How many nodes a walker visits in `doc` when every shared (aliased) node counts once per
    place it appears, or None past `limit` or on a cycle. Linear in the distinct nodes: each
    shared node's size is computed once."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any) -> int:
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:  # an alias inside its own anchor: infinite to a walker
            raise _TooLarge
        busy.add(key)
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise _TooLarge
        busy.discard(key)
        sizes[key] = total
        return total

    try:
        return size(doc)
    except (_TooLarge, RecursionError):
        return None


class _TooLarge(Exception):
    pass
