"""The one exception hierarchy of candiag.

Every error a user can cause (a bad file, a bad config, an adapter that is not
there) is a :class:`CandiagError` whose message says *what* is wrong, *where*
(file:line, key path, device) and *how to fix it*.  The CLI catches only
``CandiagError`` and prints its message without a traceback; anything else is a
bug and keeps its traceback.

::

    CandiagError
    ├── InputError                  bad user input (files, arguments)
    │   ├── CaptureError            unreadable/empty capture file
    │   ├── DbcError                DBC that does not parse or is inconsistent
    │   └── ConfigError             config-like file invalid (carries all problems)
    │       └── ProfileError        meter profile invalid
    ├── SafetyError                 a request that would transmit on CAN or
    │                               write on Modbus (never allowed)
    ├── LinkError                   a bus or port that cannot be used
    │   ├── BusUnavailableError     CAN interface missing / lost / bus-off
    │   └── PortUnavailableError    serial port missing / lost
    │       └── SettingUnsupportedError  the port opens but refuses a setting (parity, baud)
    └── RecordingError              a capture can no longer be written

Example scenarios: a DBC with a syntax error → ``DbcError("dbc/x.dbc:12: ...")``;
``check-config`` finding three problems → one ``ConfigError`` listing all three,
each as ``file:line:col: key.path: expected X, found Y`` (docs/config-errors.md); a
Modbus profile asking for function code 6 → ``SafetyError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (whitespace runs made one space), cut to ``limit`` with an
    ellipsis: for a log line or a message quoting what a library raised."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with an ellipsis.

    A message never carries a whole value from a file: a 10 MB string, or a YAML alias
    bomb that expands to gigabytes, must not be copied into the error (or the journal).
    Containers are walked only until the text is long enough, so the cost does not
    depend on the value's size.
    """
    text = _short(value, limit + 1)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PAIRS = {list: "[]", tuple: "()", set: "{}", frozenset: "{}", dict: "{}"}


def _short(value: object, budget: int) -> str:
    if budget <= 0:
        return ""
    brackets = next((b for kind, b in _PAIRS.items() if isinstance(value, kind)), None)
    if brackets is None:
        if isinstance(value, (str, bytes)):
            return repr(value[:budget])[:budget]
        if isinstance(value, int) and value.bit_length() > 64:
            return f"<a {value.bit_length()}-bit integer>"
        return repr(value)[:budget]
    text = brackets[0]
    items: Iterable[Any] = value.items() if isinstance(value, dict) else value  # type: ignore[assignment]
    for item in items:
        if len(text) >= budget:
            return text + "…"
        if isinstance(value, dict):
            key, val = item
            text += _short(key, budget - len(text)) + ": "
            text += _short(val, budget - len(text))
        else:
            text += _short(item, budget - len(text))
        text += ", "
    return (text[:-2] if len(text) > 1 else text) + brackets[1]


class CandiagError(Exception):
    """Base class of every error candiag reports to a user."""

    exit_code: int = 1


class InputError(CandiagError):
    """User-supplied input (file, argument) is invalid."""

    exit_code = 2


class CaptureError(InputError):
    """A capture file is empty, unreadable or in an unknown format."""


class DbcError(InputError):
    """A DBC file does not parse or declares something candiag cannot use."""


class ConfigError(InputError):
    """A configuration-like file (config, profile, thresholds, web config) is invalid.

    Carries every problem found (not just the first) so that one ``check-config`` run
    lists all of them.  Each problem is one line that names its own file, in the format of
    ``docs/config-errors.md`` (``file:line:col: key.path: expected X, found Y; fix``, built
    by :mod:`candiag.config.problems`, which passes ``located=True``).  Problems given
    without their file are prefixed with ``path``; with several problems ``path`` also heads
    the list.
    """

    def __init__(
        self, problems: Sequence[str] | str, path: str | None = None, *, located: bool = False
    ) -> None:
        given = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        prefix = f"{path}: " if path is not None and not located else ""
        self.problems: list[str] = [prefix + p for p in given]
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            head = f"{path}: " if path else ""
            message = (
                head
                + f"{len(self.problems)} problems:\n"
                + "\n".join(f"  - {p}" for p in self.problems)
            )
        super().__init__(message)


class ProfileError(ConfigError):
    """A Modbus meter profile is invalid (a config-like file: its problems as a ConfigError's)."""


class SafetyError(CandiagError):
    """Something asked candiag to transmit on CAN or write on Modbus."""

    exit_code = 2


class LinkError(CandiagError):
    """A bus or port cannot be used (missing, lost, in bus-off)."""

    exit_code = 3


class BusUnavailableError(LinkError):
    """A CAN interface is missing, went down, or raised bus-off."""


class PortUnavailableError(LinkError):
    """A serial port or Modbus gateway cannot be opened or was lost."""


class SettingUnsupportedError(PortUnavailableError):
    """The serial port opens, but not at the asked setting (a pty refuses parity E; an
    adapter a baud rate): that setting cannot be tried on this port, the others can."""


class RecordingError(CandiagError):
    """A capture file can no longer be written (disk full, permission)."""

    exit_code = 4
