"""YAML request bodies read as the plain data a JSON body gives, bounded against hostile YAML.

Kubernetes reads YAML with a YAML 1.1 reader (go-yaml v2 under sigs.k8s.io/yaml), as PyYAML
does: `yes`/`on` are booleans, `010` is 8. Reading it the way the main YAML server does means a
`json:` rule sees the value that server will act on. Keys become text as they do on their way
to JSON in sigs.k8s.io/yaml (`1` -> "1", `on` -> "true"); timestamps and binary stay text.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

Decoded = tuple[tuple[Any, ...], frozenset[str]]


class _Constructor(SafeConstructor):
    """Safe construction (no Python objects), the last duplicate key wins as in Go, a record of
    every duplicate (exact or by case), and a bound on what merge keys (`<<`) may copy."""

    duplicates = False
    budget = 0  # key/value pairs merge keys may still copy

    def flatten_mapping(self, node: Any) -> Any:
        # `<<: [*a, *a, ...]` copies pairs at every level: a merge-key bomb grows exponentially
        # before any alias check could run, so the copies are counted as they are made.
        super().flatten_mapping(node)
        self.budget -= len(getattr(node, "merge", None) or ())
        if self.budget < 0:
            raise ValueError("merge keys copy too much")

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping node, but found {node.id!s}", node.start_mark)
        self.flatten_mapping(node)
        merged = len(getattr(node, "merge", None) or ())  # merged pairs come first, own keys override them
        mapping: dict[str, Any] = {}
        own: set[str] = set()
        for i, (key_node, value_node) in enumerate(node.value):
            # Keys become text before they meet: in a Python dict 1, 1.0 and True are one key.
            key = _key_text(self.construct_object(key_node, deep=True))
            if i >= merged:
                self.duplicates |= key in own
                own.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        if len({k.casefold() for k in own}) != len(own):
            self.duplicates = True
        return mapping

    def construct_yaml_float(self, node: Any) -> Any:
        text = self.construct_scalar(node).replace("_", "").lower()
        if "e" in text and ":" not in text and "." not in text.split("e")[0]:
            return float(text)  # `0e5`: a float to go-yaml; ruamel would warn that 1.1 wants a dot
        return super().construct_yaml_float(node)


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
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)


# go-yaml's float: ruamel's YAML 1.1 table leaves `-.0` and `+.5` text, go-yaml reads numbers.
_GO_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_STR = "tag:yaml.org,2002:str"


class _Resolver(VersionedResolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)
        if str(tag) == _STR and kind is ScalarNode and implicit[0] and _GO_FLOAT.match(value):
            return Tag(suffix="tag:yaml.org,2002:float")
        return tag


def _loader() -> tuple[YAML, _Constructor]:
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 1)
    yaml.Constructor = _Constructor
    yaml.Resolver = _Resolver
    return yaml, yaml.constructor


def decode_yaml(body: bytes, limit: int, expanded_nodes: int) -> Decoded:
    """Every non-empty document of `body` and the flags of how it was read. Past `limit`
    bytes, an alias bomb, a cycle or absurd nesting: no documents and `body_unparsed`."""
    if len(body) > limit:
        return (), frozenset({"body_too_large", "body_unparsed"})
    yaml, constructor = _loader()  # a loader keeps state: one per body
    constructor.budget = expanded_nodes + len(body)
    if flow_depth(body) > MAX_FLOW_DEPTH:
        return (), frozenset({"body_unparsed"})
    try:
        docs = tuple(d for d in yaml.load_all(body) if d is not None)
    except Exception:  # noqa: BLE001 - YAMLError, RecursionError, and ruamel asserts on some inputs
        return (), frozenset({"body_unparsed"})
    if expanded_size(docs, expanded_nodes + len(body)) is None:
        return (), frozenset({"body_unparsed"})
    flags = set()
    if constructor.duplicates:
        flags.add("duplicate_keys")
    if len(docs) > 1:
        flags.add("multi_document")
    return docs, frozenset(flags)


# ruamel's scanner is quadratic in the nesting of [ ] and { } (it rescans one possible key per
# level at every token): 1,500 levels cost a second. Manifests nest a few levels deep.
MAX_FLOW_DEPTH = 100
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def flow_depth(body: bytes) -> int:
    """How deep brackets nest, counting those in quoted text too (an upper bound): a
    cheap guard run before the parser, in one pass over the brackets alone."""
    depth = deepest = 0
    for b in body.translate(None, _NOT_BRACKETS):
        if b in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


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
