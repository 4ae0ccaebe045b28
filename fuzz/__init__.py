"""Fuzzing of every candiag input path: shared targets, atheris harness and the long runner.

* :mod:`fuzz.targets`  one check per input path (bytes in, invariants asserted), its seed
  corpus and its hypothesis strategy; the fast tests in ``tests/fuzz/`` and the long mode
  (``make fuzz``) both use them, so a property is written once.
* :mod:`fuzz.harness`  the coverage-guided (atheris/libFuzzer) entry point for one target.
* ``python -m fuzz``   the long mode: hypothesis with large example counts, then atheris,
  for ``FUZZ_MINUTES`` in total; prints inputs tried and time per target and saves any
  crashing input under ``fuzz/crashes/``.

Why bytes in everywhere: libFuzzer mutates bytes, and hypothesis shrinks byte strings well,
so the same check serves both engines and a crash file replays with either.
"""
