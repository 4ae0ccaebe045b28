"""Every numpy sort in candiag names its kind: the default (SIMD quicksort) returned a wrong
permutation under QEMU's CPU emulation in the microVM (tests/socketcan), where it shifted
decoded values between the signals of a message; ``kind="stable"`` takes another code path and
also makes ties keep their order, which the time-ordered merges rely on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "candiag"
SORTS = {"sort", "argsort"}


def unkinded_sorts(source: str, name: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        base = node.func.value
        numpy_call = isinstance(base, ast.Name) and base.id in {"np", "numpy"}
        if numpy_call and node.func.attr in SORTS:
            if not any(k.arg == "kind" for k in node.keywords):
                lines.append(node.lineno)
    return lines


def test_numpy_sorts_name_their_kind() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in unkinded_sorts(path.read_text(encoding="utf-8"), str(path))
    ]
    assert found == [], "np.sort/np.argsort without kind=: " + ", ".join(found)


def test_the_check_catches_a_default_sort() -> None:
    assert unkinded_sorts("import numpy as np\nx = np.argsort(a)\n", "x.py") == [2]
    assert unkinded_sorts("x = np.sort(a, kind='stable')\n", "x.py") == []
