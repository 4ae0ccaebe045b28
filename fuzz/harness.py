"""Coverage-guided fuzzing of one target with atheris (libFuzzer): ``python -m fuzz.harness
TARGET [libFuzzer options] [CORPUS_DIR ...]``.

candiag is imported under atheris' instrumentation so libFuzzer sees which branches of
candiag (not of numpy or cantools) an input reaches.  A check that raises is a crash:
libFuzzer writes the input to ``-artifact_prefix`` (``fuzz/crashes/`` from the runner).
"""

from __future__ import annotations

import logging
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["candiag"]):
    import candiag.capture.formats.candump
    import candiag.capture.reader
    import candiag.cli
    import candiag.config.load
    import candiag.decode.dbc
    import candiag.decode.decoder
    import candiag.modbus.link
    import candiag.modbus.poller
    import candiag.modbus.profile  # noqa: F401  (imported for instrumentation)

from fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.harness TARGET [libFuzzer args]; targets: {list(TARGETS)}")
    target = TARGETS[argv[1]]
    # python-can's readers and the poller log every damaged record; the fuzzer's own
    # statistics are what matters here.
    logging.disable(logging.CRITICAL)

    def one_input(data: bytes) -> None:
        target.check(data)

    atheris.Setup([argv[0], *argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
