"""Every real-world DBC of the corpus: loaded as cantools loads it, decoded as cantools decodes.

The corpus is opendbc's DBCs and cantools' test DBCs (the folders in
``CANDIAG_REALWORLD_DBC``, separated by ``os.pathsep``; by default those ``make realworld``
fetches into ``.realworld/``, see tests/realworld.py); the test is skipped when none is there.  For every file:

* candiag refuses it only where cantools refuses it even with ``strict=False`` (or where
  it holds what no CAN frame can); it loads strict wherever cantools loads it strict;
* every message is decoded from edge, random and multiplexer-selecting payloads and
  compared with cantools (tests/dbc_oracle.py).

The counts are printed (``pytest -s``) and reported in docs/dbc.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cantools
import pytest

from tests.dbc_corpus import CorpusReport, check_dbc, corpus_dirs, corpus_files

pytestmark = pytest.mark.slow

DIRS = corpus_dirs()
FILES = corpus_files(DIRS)


def _cantools_verdict(path: Path) -> str:
    text = path.read_bytes().decode("cp1252", errors="replace")
    logging.disable(logging.CRITICAL)
    try:
        for strict, verdict in ((True, "strict"), (False, "lenient")):
            try:
                cantools.database.load_string(text, database_format="dbc", strict=strict)
                return verdict
            except Exception:  # any refusal is a verdict here
                continue
        return "refused"
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.skipif(not FILES, reason="no real-world DBC corpus (set CANDIAG_REALWORLD_DBC)")
def test_realworld_dbcs_load_and_decode_like_cantools() -> None:
    report = CorpusReport()
    failures: list[str] = []
    verdicts: dict[str, str] = {}
    for path in FILES:
        verdicts[str(path)] = _cantools_verdict(path)
        try:
            check_dbc(path, report)
        except AssertionError as err:
            failures.append(f"{path}: {err}")
    print(f"\n{len(FILES)} DBCs: {report.summary()}")
    for why in sorted(report.refused.values()):
        print(f"  refused: {why.splitlines()[0]}")
    assert not failures, "\n".join(failures[:10])
    for path in report.refused:
        assert verdicts[path] == "refused", f"{path}: cantools loads it, candiag refuses it"
    for path, verdict in verdicts.items():
        if verdict == "strict":
            assert path in report.strict, f"{path}: cantools loads it strict, candiag does not"
    assert report.strict and report.lenient_only
    assert report.counts["values_vs_cantools"] > 0


OPENDBC_UNUSED_VAL = [
    ("generator/gm/gm_global_a_powertrain.dbc", 345, "GasRegenCmdActiveInv"),
    ("rivian_primary_actuator.dbc", 875, "ACM_VehicleHoldRequired"),
    ("tesla_can.dbc", 783, "UI_mapSpeedLimit"),
]


@pytest.mark.parametrize(("name", "line", "signal"), OPENDBC_UNUSED_VAL)
def test_opendbc_unused_value_tables_are_located(name: str, line: int, signal: str) -> None:
    from candiag.decode.dbc import load_dbc_paths

    paths = [d / name for d in DIRS if (d / name).is_file()]
    if not paths:
        pytest.skip(f"{name} is not in the corpus")
    db = load_dbc_paths(paths[:1])
    unused = [w for w in db.warnings if w.kind == "unused_value_table"]
    assert [(w.line, signal in w.text) for w in unused] == [(line, True)]
