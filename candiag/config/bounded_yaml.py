"""YAML read with bounds: for config files of a few hundred bytes, where anything else is a
mistake or an attack.

No anchors or aliases (a "billion laughs" alias bomb expands a 1 kB file to gigabytes),
nesting at most :data:`MAX_DEPTH`, no duplicate keys (YAML would silently keep the last one),
any value a constructor cannot build reported as a problem at its place, never raised. Problems
go to a :class:`~candiag.config.problems.Problems` in its one format, with the key positions.
The web config (:mod:`candiag.metrics.webconfig`) reads through this.
"""

from __future__ import annotations

from typing import Any

from candiag.config.problems import KeyPath, Position, Problems
from candiag.errors import shown

MAX_DEPTH = 16


def parse_bounded_yaml(text: str, problems: Problems, *, what: str = "a web config") -> object:
    """The document; key positions go to ``problems`` (a problem when it is not YAML)."""
    import yaml  # only needed when a YAML file is read

    loader: Any = None
    node: Any = None
    try:
        loader = _bounded_loader_class()(text)
        loader.what = what  # (already reads: may raise ReaderError)
        node = loader.get_single_node()
        return None if node is None else loader.construct_document(node)
    except _Refused as err:
        problems.add((), err.expected, err.found, err.hint, at=err.at)
        return None
    except yaml.YAMLError as err:
        found = f"a YAML syntax error ({shown(_yaml_problem(err), 200)[1:-1]})"
        problems.add((), "valid YAML", found, "fix the YAML syntax", at=_yaml_where(err, text))
        return None
    finally:
        if loader is not None:
            loader.dispose()
        if node is not None:
            problems.positions = _key_positions(node)


def _yaml_where(err: Exception, text: str) -> Position | None:
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    position = getattr(err, "position", None)  # ReaderError: a character YAML does not allow
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        return line, position - (text.rfind("\n", 0, position) + 1) + 1
    return None


def _yaml_problem(err: Exception) -> str:
    character = getattr(err, "character", None)
    if isinstance(character, int):
        return f"character U+{character:04X} is not allowed in YAML"
    return str(getattr(err, "problem", None) or err)


class _Refused(Exception):
    """What the bounded loader refuses, as a problem at a place in the file."""

    def __init__(self, mark: Any, expected: str, found: str, hint: str) -> None:
        super().__init__(found)
        self.at: Position = (mark.line + 1, mark.column + 1)
        self.expected = expected
        self.found = found
        self.hint = hint


_LOADER: type[Any] | None = None


def _bounded_loader_class() -> type[Any]:
    """yaml.SafeLoader without anchors, aliases, deep nesting or duplicate keys."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
        depth = 0
        what = "a YAML file"

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                raise _Refused(
                    event.start_mark,
                    f"{self.what} without YAML anchors or aliases",
                    "an anchor or alias (&name, *name)",
                    "write each value out",
                )
            if self.depth >= MAX_DEPTH:
                raise _Refused(
                    event.start_mark,
                    f"at most {MAX_DEPTH} levels of nesting",
                    "more",
                    "fix the YAML",
                )
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (_Refused, yaml.YAMLError):
                raise
            except Exception as err:
                # Scalars the parser accepts but a constructor cannot turn into a value: a
                # 5000-digit integer, month 13, "!!timestamp 2024-99-99" (AttributeError
                # inside PyYAML). Whatever a constructor raises, it is this file's value.
                raise _Refused(
                    node.start_mark,
                    "a value YAML can read",
                    f"one it cannot ({shown(str(err), 120)[1:-1]})",
                    "fix the value",
                ) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise _Refused(
                            key_node.start_mark,
                            "each key once in a mapping",
                            f"key {shown(key_node.value)} a second time",
                            "keep one",
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _LOADER = BoundedLoader
    return BoundedLoader


def _key_positions(node: Any) -> dict[KeyPath, Position]:
    """(line, column) of mapping keys by key path (the composer bounded the depth)."""
    import yaml

    positions: dict[KeyPath, Position] = {}
    todo: list[tuple[Any, KeyPath]] = [(node, ())]
    while todo:
        current, path = todo.pop()
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key_path = (*path, str(key_node.value))
                    mark = key_node.start_mark
                    positions[key_path] = (mark.line + 1, mark.column + 1)
                    todo.append((value_node, key_path))
    return positions
