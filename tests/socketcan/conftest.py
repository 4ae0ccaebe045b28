"""The SocketCAN suite runs only inside the microVM (``make test-socketcan``).

Outside it (``make test`` on a host without AF_CAN) the whole directory is
skipped with the reason, before any test module is imported.  Inside, vcan0
and vcan1 exist and are up (``hil/vm/guest.sh``), and the suite runs as root.
"""

from __future__ import annotations

import inspect
import os
import socket
from collections.abc import Iterator

import pytest


def _why_not_enabled() -> str | None:
    if os.environ.get("CANDIAG_SOCKETCAN") != "1":
        return "tests/socketcan runs inside the microVM only: `make test-socketcan`"
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW).close()
    except (OSError, AttributeError) as err:
        return f"CANDIAG_SOCKETCAN=1 but this kernel has no AF_CAN ({err})"
    return None


_REASON = _why_not_enabled()
if _REASON is not None:
    # Loaded while collecting tests/: skip the directory.  Named on the command line
    # (an initial conftest, where a skip would abort pytest): collect nothing and say why.
    if any(f.function == "_set_initial_conftests" for f in inspect.stack()):
        collect_ignore_glob = ["*.py"]

        def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
            terminalreporter.write_line(f"SKIPPED tests/socketcan: {_REASON}")

    else:
        pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture
def vcan0() -> Iterator[str]:
    """The vcan0 interface, up; left up even if a test took it down."""
    from .vcanlib import link

    link("vcan0", "up")
    yield "vcan0"
    link("vcan0", "up")
