"""Self-checks of the hardware-in-the-loop kit (hil/) and the microVM scripts, on the host.

The kit itself needs adapters; here we check what can be checked without them: the
scripts parse (and pass shellcheck when it is installed), the bring-up script builds
the exact ``ip`` commands, and ``hil/test_hil.py`` skips with its reason when no bench
is named.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
HIL = REPO / "hil"
SCRIPTS = sorted(HIL.rglob("*.sh"))


def _load_hil_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("candiag_hil_suite", HIL / "test_hil.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _bash(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], capture_output=True, text=True, timeout=30, check=False, cwd=REPO
    )


def test_kit_has_its_scripts() -> None:
    names = {p.relative_to(HIL).as_posix() for p in SCRIPTS}
    assert {"bringup-socketcan.sh", "loopback.sh", "vm/run.sh", "vm/guest.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(HIL).as_posix())
def test_script_parses(script: Path) -> None:
    done = _bash("-n", str(script))
    assert done.returncode == 0, done.stderr


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    done = subprocess.run(
        [shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_bringup_builds_the_ip_commands() -> None:
    done = _bash(
        "hil/bringup-socketcan.sh", "can0", "125000", "--restart-ms", "100", "--termination",
        "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ip link set can0 down",
        "ip link set can0 type can bitrate 125000 listen-only off restart-ms 100 termination 120",
        "ip link set can0 up",
        "ip -details -statistics link show can0",
    ]
    listen = _bash("hil/bringup-socketcan.sh", "can1", "250000", "--listen-only", "--dry-run")
    assert "ip link set can1 type can bitrate 250000 listen-only on" in listen.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["can0", "12"], "must be 10000..1000000"),
        (["can0", "125000", "--restart-ms", "soon"], "--restart-ms needs milliseconds"),
        (["can0", "125000", "--bogus"], "unknown option --bogus"),
        (["can0;reboot", "125000"], "is not an interface name"),
        ([], "usage: hil/bringup-socketcan.sh IFACE BITRATE"),
    ],
)
def test_bringup_rejects_bad_arguments(args: list[str], message: str) -> None:
    done = _bash("hil/bringup-socketcan.sh", *args, "--dry-run")
    assert done.returncode == 2
    assert message in done.stderr


def test_loopback_help_and_bad_spec() -> None:
    help_ = _bash("hil/loopback.sh", "--help")
    assert help_.returncode == 0 and "--sim IFACE:CHANNEL" in help_.stdout
    bad = _bash("hil/loopback.sh", "--sim", "can1")
    assert bad.returncode == 2 and "must be IFACE:CHANNEL" in bad.stderr


@pytest.mark.slow
def test_hil_suite_skips_with_its_reason_without_a_bench() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANDIAG_HIL_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(HIL / "test_hil.py")],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" not in done.stdout and "failed" not in done.stdout
    assert "7 skipped" in done.stdout, done.stdout
    assert "no HIL bench named: set CANDIAG_HIL_SIM_IFACE" in done.stdout


def test_bench_from_env_explains_what_is_missing_or_wrong() -> None:
    hil = _load_hil_module()
    full = {
        "CANDIAG_HIL_SIM_IFACE": "socketcan",
        "CANDIAG_HIL_SIM_CHANNEL": "can1",
        "CANDIAG_HIL_DUT_IFACE": "pcan",
        "CANDIAG_HIL_DUT_CHANNEL": "PCAN_USBBUS1",
    }
    bench = hil.bench_from_env(full)
    assert bench == hil.Bench("socketcan", "can1", "pcan", "PCAN_USBBUS1", 125000)
    assert bench.bitrate_args("socketcan") == [] and bench.bitrate_args("pcan") == [
        "-b",
        "125000",
    ]
    missing = hil.bench_from_env({"CANDIAG_HIL_SIM_IFACE": "socketcan"})
    assert isinstance(missing, str) and "CANDIAG_HIL_DUT_CHANNEL" in missing
    assert "CANDIAG_HIL_SIM_IFACE," not in missing
    slow = hil.bench_from_env({**full, "CANDIAG_HIL_BITRATE": "5000"})
    assert isinstance(slow, str) and "10000..1000000" in slow
    same = hil.bench_from_env({**full, "CANDIAG_HIL_DUT_IFACE": "socketcan",
                               "CANDIAG_HIL_DUT_CHANNEL": "can1"})  # fmt: skip
    assert isinstance(same, str) and "two adapters" in same
