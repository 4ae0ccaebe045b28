"""The technician's install: build the wheel, install it into a fresh venv, run the demo.

What the README tells a technician (``pipx install candiag-*.whl`` or ``pip install`` into
a venv, then ``candiag demo``) without make, a compiler, the source tree or the network:

* the wheel is built from a copy of the sources (pyproject.toml, README.md, candiag/) so
  the worktree gets no build/ folder; with the build backend already installed when it is
  (``--no-build-isolation``), otherwise with pip's isolated build, which needs the package
  index: the test is skipped, saying so, when neither can build offline;
* the fresh venv gets the wheel with ``--no-deps --no-index``; its dependencies come from
  the environment running the tests through a ``.pth`` line (a plain path: the ``.pth``
  files there, e.g. candiag's own editable install, are not processed), and ``pip check``
  proves every requirement the wheel declares is met;
* ``candiag demo`` and ``python -m candiag`` run from a folder outside the repository, so
  the demo config, DBCs and meter profiles must come from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE_SIGNS = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "invalid command 'bdist_wheel'",
)
pytestmark = pytest.mark.slow


def _pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_wheel(folder: Path) -> Path:
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "candiag", source / "candiag", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = folder / "dist"
    tries = [
        _pip("wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(dist)),
    ]
    if tries[-1].returncode != 0:
        tries.append(_pip("wheel", str(source), "--no-deps", "-w", str(dist)))
    if tries[-1].returncode != 0:
        output = "\n".join(t.stdout + t.stderr for t in tries)
        if any(sign in output for sign in OFFLINE_SIGNS):
            pytest.skip("no build backend installed and no package index to fetch one from")
        pytest.fail(f"the wheel does not build:\n{output[-3000:]}")
    (wheel,) = dist.glob("candiag-*.whl")
    return wheel


def fresh_venv(folder: Path) -> Path:
    """A new venv without pip (the outer pip installs into it); returns its python."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies already installed here, offline (a path line: its .pth files not run).
    Path(site, "candiag-test-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", "utf-8", newline="\n"
    )
    return python


def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for packaged in (
        "candiag/data/demo.toml",
        "candiag/data/dbc/power_module.dbc",
        "candiag/data/meters/sdm630.toml",
        "candiag/data/diagnosis.toml",
        "candiag/sim/meter_scenarios.toml",
        "candiag/py.typed",
    ):
        assert packaged in names, f"{packaged} is not in the wheel"
    assert not any(n.startswith(("tests/", "config/", "dbc/")) for n in names)

    python = fresh_venv(tmp_path)
    done = _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
    assert done.returncode == 0, done.stderr
    check = _pip("--python", str(python), "check")
    assert check.returncode == 0, check.stdout + check.stderr

    elsewhere = tmp_path / "field"  # not the repository: nothing from config/ or dbc/
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import candiag; print(candiag.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where

    script = python.parent / ("candiag.exe" if os.name == "nt" else "candiag")
    demo = subprocess.run(
        [str(script), "demo", "--duration", "6", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=elsewhere,
    )
    assert demo.returncode == 0, demo.stderr
    assert re.search(r"candiag demo: sim0: \d+ fps, .*12/12 nodes; meters 3/3 up", demo.stdout)
    assert re.search(r"config=\S*venv\S*candiag.data.demo\.toml", demo.stderr), demo.stderr

    version = subprocess.run(
        [str(python), "-m", "candiag", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=elsewhere,
    )
    assert version.stdout.strip().startswith("candiag ")
