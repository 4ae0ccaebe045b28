"""Test helpers shared by several test modules (a module name no conftest.py can shadow)."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """Path of an external tool; skip outside CI when missing, fail in CI (which installs it)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI; .ci/run installs it")
        pytest.skip(f"{name} not installed (apt-get install it to run this test)")
    return path
