"""Every fuzz target of :mod:`fuzz.targets`, fast: hypothesis with modest example counts.

Each target asserts an input path's contract (a result plus what was skipped, or a
CandiagError naming where; never another exception, never a hang).  ``make fuzz`` runs
the same checks for minutes with hypothesis and atheris; this keeps them honest in
``make test``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.targets import TARGETS, ByteReader, check_decoder, mutate, strategy

# Examples per target (about 20 s of CPU in all): the slow ones (files, the CLI with its
# DBC check) get fewer.  `make fuzz` runs the same targets for minutes.
EXAMPLES = {
    "candump": 1200,
    "capture": 600,
    "dbc": 250,
    "decoder": 800,
    "config": 800,
    "config_tree": 800,
    "check_config_cli": 80,
    "profile": 1000,
    "modbus_reply": 1500,
    "modbus_poller": 1000,
}


def _fuzz_test(name: str) -> Callable[[], None]:
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy(target))
    def test(data: bytes) -> None:
        target.check(data)

    test.__name__ = f"test_fuzz_{name}"
    test.__doc__ = f"fuzz: {target.description}"
    typed: Callable[[], None] = test
    return typed


test_fuzz_candump = _fuzz_test("candump")
test_fuzz_capture = _fuzz_test("capture")
test_fuzz_dbc = _fuzz_test("dbc")
test_fuzz_decoder = _fuzz_test("decoder")
test_fuzz_config = _fuzz_test("config")
test_fuzz_config_tree = _fuzz_test("config_tree")
test_fuzz_check_config_cli = _fuzz_test("check_config_cli")
test_fuzz_profile = _fuzz_test("profile")
test_fuzz_modbus_reply = _fuzz_test("modbus_reply")
test_fuzz_modbus_poller = _fuzz_test("modbus_poller")


def test_every_target_has_a_fast_test() -> None:
    assert set(EXAMPLES) == set(TARGETS)
    assert all(f"test_fuzz_{name}" in globals() for name in TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass_their_check(name: str) -> None:
    """The seed corpus is valid input (the shipped files, simulator captures)."""
    seeds = TARGETS[name].seeds()
    assert seeds
    for seed in seeds:
        TARGETS[name].check(seed)


def test_shipped_files_are_accepted_not_just_survived() -> None:
    """The seeds of the file formats are really parsed (a check that refused everything
    would pass the fuzz tests vacuously)."""
    from candiag.capture.formats.candump import parse_candump
    from candiag.config.load import load_config
    from candiag.decode.dbc import load_dbc_paths
    from fuzz.targets import EXAMPLE_CONFIG, PROFILE_DIR, ROOT
    from fuzz.targets import _seed_candump as seed_candump

    first = parse_candump(seed_candump()[0])
    assert len(first.batch) == 40 and not first.malformed
    assert len(load_dbc_paths([ROOT / "dbc"]).messages) > 10
    assert load_config(EXAMPLE_CONFIG).buses
    from candiag.modbus.profile import load_profile

    assert all(load_profile(p).blocks for p in PROFILE_DIR.glob("*.toml"))


def test_mutate_damages_deterministically() -> None:
    seed = b"(1700000000.000100) can0 123#0102\n" * 4
    a = mutate(seed, ByteReader(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    b = mutate(seed, ByteReader(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    assert a == b and a != seed


def test_byte_reader_stays_in_range() -> None:
    r = ByteReader(bytes(range(256)))
    values = [r.int(3, 9) for _ in range(100)]
    assert all(3 <= v <= 9 for v in values)
    assert r.int(5, 5) == 5
    # Past the end: a PRNG seeded with the input, so the same input is the same structure.
    first = ByteReader(b"ab")
    assert first.int(0, 0xFFFF) == 0x6261  # little-endian, from the input itself
    extended = ByteReader(b"ab").take(4)
    assert first.int(0, 1000) == (extended[2] | extended[3] << 8) % 1001
    tail = ByteReader(b"x")
    tail.take(1)
    assert tail.take(16) == ByteReader(b"x").take(17)[1:]


def test_decoder_target_compares_many_values() -> None:
    """The decoder target is not vacuous: random inputs give layouts whose signals are
    really compared with cantools."""
    import random

    rng = random.Random(7)
    checked = [check_decoder(rng.randbytes(rng.randint(0, 40))) for _ in range(60)]
    assert sum(checked) > 500
    assert sum(c > 0 for c in checked) > 30


def test_check_config_as_a_process_on_damaged_files(tmp_path: Path) -> None:
    """The installed command, not only main(): damaged configs exit 2 with one message."""
    import random
    import subprocess
    import sys

    from fuzz.targets import EXAMPLE_CONFIG

    rng = random.Random(3)
    seed = EXAMPLE_CONFIG.read_bytes()
    for k in range(3):
        path = tmp_path / f"damaged{k}.toml"
        path.write_bytes(mutate(seed, ByteReader(rng.randbytes(32))) + b"\n[[can.buses]]\nx = 1\n")
        proc = subprocess.run(
            [sys.executable, "-m", "candiag", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("candiag: error: ") and "Traceback" not in proc.stderr
        assert str(path) in proc.stderr
