"""YAML for plan files: a SafeLoader that refuses a key given twice.

Its own module because the classes subclass PyYAML's: the plan module (which
the wizard's first screen needs) then imports PyYAML only when a plan is
read or written, not at start.
"""

from __future__ import annotations

import yaml


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, first: int, again: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.again = key, first, again


class PlanLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (``recipe: demo``
    then ``recipe: diffueraser``): plain YAML keeps the last one without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)):
                continue  # a complex key: SafeLoader says what is wrong with it
            if key in seen:
                raise DuplicateKey(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)
