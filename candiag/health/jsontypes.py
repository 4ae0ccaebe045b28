"""JSON values as types: what a report's ``to_json()`` gives (no ``Any`` leaves a package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

# Read-only containers, so that a ``list[int]`` or ``dict[str, int]`` is a JSON value too.
Json: TypeAlias = "str | int | float | bool | Sequence[Json] | Mapping[str, Json] | None"
JsonObject: TypeAlias = "dict[str, Json]"
