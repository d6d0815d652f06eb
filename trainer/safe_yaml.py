"""YAML from people we don't know (a plan POSTed to the service, a config on disk), read with
bounds before anything is built from it: no aliases (`*name`: a 614-byte plan with nested
aliases once expanded to 10^7 entries, and a recursive anchor became a 500), at most
`max_nodes` nodes and `max_depth` levels. JSON is YAML, so JSON bodies take the same path."""

from __future__ import annotations

import yaml

MAX_NODES = 50_000
MAX_DEPTH = 40


class YamlRefused(ValueError):
    """The document breaks a bound; the message names it and what to write instead."""


class _BoundedLoader(yaml.SafeLoader):
    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def __init__(self, stream):
        super().__init__(stream)
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise YamlRefused(
                f"line {mark.line + 1}: aliases (*name) are not accepted; write the values out"
            )
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise YamlRefused(
                f"more than {self.max_nodes:,} values; a plan or config has far fewer"
            )
        self.depth += 1
        if self.depth > self.max_depth:
            raise YamlRefused(f"nested deeper than {self.max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH):
    """The document in `text`, within the bounds (YamlRefused, or yaml.YAMLError when it is
    not YAML at all)."""
    loader = type("Loader", (_BoundedLoader,), {"max_nodes": max_nodes, "max_depth": max_depth})
    return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader, bounded
