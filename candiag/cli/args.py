"""The command line's shared arguments, declared once: one meaning per letter in every command.

========================  ==================================================================
``-i/--interface``        python-can interface of an adapter (``pcan``, ``socketcan``, ...)
``-c/--channel``          its channel (``can0``, ``PCAN_USBBUS1``); never anything else
``-b/--bitrate``          nominal bit/s (default :data:`~candiag.health.defaults.DEFAULT_BITRATE`)
``--fd``/``--data-bitrate``  CAN FD
``--bus-kwargs K=V ...``  more keyword arguments for ``can.Bus`` (as python-can's own CLI)
``--timing K=V ...``      bit timing registers instead of a bitrate (as python-can's own CLI)
``--dbc PATH``            a DBC file or folder (repeatable)
``--config FILE``         a candiag TOML configuration (``run`` has no ``-c``: ``-c`` is a channel)
``-d/--duration S``       stop after S seconds
``-q/--quiet``            no progress display
========================  ==================================================================

``--bus-kwargs`` and ``--timing`` read their values exactly as python-can 4.6's ``can/cli.py``
does (``_BusKwargsAction``, ``_BitTimingAction``): ``KEY=VALUE`` words, values cast by
``can.util.cast_from_string`` (integers, floats, ``true``/``false``, else text); a timing is
``f_clock brp tseg1 tseg2 sjw nof_samples`` (classic) or the ``nom_*``/``data_*`` set (FD).
Two differences, both refusals with a message instead of silence: a key that another option
owns (``bitrate=``, ``channel=``, ...) and an unknown ``--timing`` key.  Whatever they hold,
the bus is still opened listen-only (:func:`candiag.ingest.live.open_listen_only_bus`).

The help formatter here is the one of every command: paragraphs wrapped, example blocks
(indented lines) kept as written, and a default shown once, only when there is one.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from candiag.errors import InputError
from candiag.health.defaults import DEFAULT_BITRATE

if TYPE_CHECKING:
    import can

BusKwargValue = str | int | float | bool

#: ``can.Bus`` keywords that candiag's own options set; ``--bus-kwargs`` may not set them.
OWNED_BUS_KWARGS: Mapping[str, str] = {
    "interface": "-i/--interface",
    "bustype": "-i/--interface",
    "channel": "-c/--channel",
    "bitrate": "-b/--bitrate",
    "data_bitrate": "--data-bitrate",
    "fd": "--fd",
    "timing": "--timing",
    "ignore_config": "nothing (candiag never reads ~/.canrc or CAN_* variables)",
    "config_context": "nothing (candiag never reads ~/.canrc or CAN_* variables)",
}
#: python-can's ``--timing`` keys (``can.typechecking.BitTimingDict``/``BitTimingFdDict``).
TIMING_KEYS = ("f_clock", "brp", "tseg1", "tseg2", "sjw", "nof_samples")
TIMING_FD_KEYS = (
    "f_clock",
    "nom_brp",
    "nom_tseg1",
    "nom_tseg2",
    "nom_sjw",
    "data_brp",
    "data_tseg1",
    "data_tseg2",
    "data_sjw",
)
_KWARG = re.compile(r"^(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)=(?P<value>\S*?)$")  # python-can's


# -- help ---------------------------------------------------------------------------------------
class HelpFormatter(argparse.HelpFormatter):
    """Wraps paragraphs, keeps indented blocks (examples) as written, shows real defaults once."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.strip("\n").split("\n\n"):
            if block.startswith(" ") or "\n " in block:  # an example block: keep it
                blocks.append("\n".join(indent + line for line in block.splitlines()))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def examples(*lines: str) -> str:
    """An ``examples:`` epilog, each line a command as typed (kept unwrapped)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(
    subparsers: Any,
    name: str,
    *,
    help: str,  # noqa: A002 - argparse's own name for it
    description: str,
    example_lines: Sequence[str] = (),
    epilog: str = "",
) -> argparse.ArgumentParser:
    """A subcommand's parser with the shared formatter, its description and its examples."""
    parts = [p for p in (epilog, examples(*example_lines) if example_lines else "") if p]
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="\n\n".join(parts) or None,
        formatter_class=HelpFormatter,
    )
    return parser


# -- --bus-kwargs and --timing ---------------------------------------------------------------------
def cast_from_string(text: str) -> BusKwargValue:
    """python-can's ``can.util.cast_from_string`` (not imported: the help must stay fast)."""
    if re.match(r"^[-+]?\d+$", text):
        return int(text)
    if re.match(r"^[-+]?\d*\.\d+(?:e[-+]?\d+)?$", text):
        return float(text)
    if re.match(r"^(?:True|False)$", text, re.IGNORECASE):
        return text.lower() == "true"
    return text


def parse_bus_kwargs(words: Sequence[str]) -> dict[str, BusKwargValue]:
    """``["app_name=Bench", "serial=1234"]`` -> ``{"app_name": "Bench", "serial": 1234}``."""
    out: dict[str, BusKwargValue] = {}
    for word in words:
        match = _KWARG.match(word)
        if not match:
            raise ValueError(f"{word!r} is not KEY=VALUE (e.g. app_name=CANalyzer serial=1234)")
        key = match["name"]
        if key in OWNED_BUS_KWARGS:
            raise ValueError(f"{key}= is set with {OWNED_BUS_KWARGS[key]}, not with --bus-kwargs")
        out[key] = cast_from_string(match["value"])
    return out


def parse_timing(words: Sequence[str]) -> dict[str, int]:
    """``["f_clock=8000000", "brp=2", ...]`` -> the integer registers, checked for completeness."""
    values: dict[str, int] = {}
    for word in words:
        key, sep, text = word.partition("=")
        try:
            if not sep:
                raise ValueError
            values[key] = int(text)
        except ValueError:
            raise ValueError(f"{word!r} is not KEY=INTEGER") from None
    unknown = sorted(set(values) - set(TIMING_KEYS) - set(TIMING_FD_KEYS))
    if unknown:
        raise ValueError(
            f"unknown key {', '.join(unknown)}; classic CAN: {' '.join(TIMING_KEYS)}; "
            f"CAN FD: {' '.join(TIMING_FD_KEYS)}"
        )
    if not (set(TIMING_KEYS) <= set(values) or set(TIMING_FD_KEYS) <= set(values)):
        missing = [k for k in TIMING_KEYS if k not in values]
        raise ValueError(
            f"incomplete: classic CAN needs {' '.join(TIMING_KEYS)} (missing {' '.join(missing)}); "
            f"CAN FD needs {' '.join(TIMING_FD_KEYS)}"
        )
    return values


class _ParsedWordsAction(argparse.Action):
    """``--option K=V K=V ...``, turned into a dict by ``parse`` (argparse error if it fails)."""

    parse: Any = None

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        words = [values] if isinstance(values, str) else list(values or [])
        try:
            parsed = type(self).parse(words)
        except ValueError as err:
            raise argparse.ArgumentError(self, str(err)) from None
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update(parsed)
        setattr(namespace, self.dest, merged)


class _BusKwargsAction(_ParsedWordsAction):
    parse = staticmethod(parse_bus_kwargs)


class _TimingAction(_ParsedWordsAction):
    parse = staticmethod(parse_timing)


# -- declarations --------------------------------------------------------------------------------
def add_adapter_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    required: bool = False,
    interface_default: str | None = None,
    channel_default: str | None = None,
    interface_help: str = "python-can interface of the adapter: pcan, socketcan, kvaser, vector, ...",
    channel_help: str = "adapter channel, e.g. can0 or PCAN_USBBUS1",
    bitrate_help: str = "",
    interface_flag: bool = True,
    adapter_options: bool = True,
) -> None:
    """``-i -c -b --fd --data-bitrate --bus-kwargs --timing`` (``interface_flag=False``: the
    caller declares ``-i`` itself, e.g. in a mutually exclusive group; ``adapter_options=False``:
    only ``-i -c -b``, for the simulator, which opens its bus itself)."""
    if interface_flag:
        parser.add_argument(
            "-i",
            "--interface",
            required=required,
            default=interface_default,
            metavar="NAME",
            help=interface_help,
        )
    parser.add_argument(
        "-c",
        "--channel",
        required=required,
        default=channel_default,
        metavar="NAME",
        help=channel_help,
    )
    parser.add_argument(
        "-b",
        "--bitrate",
        type=int,
        metavar="N",
        help=bitrate_help
        or "nominal bit/s: set on adapters that take it (PCAN, Kvaser, Vector; SocketCAN: set "
        f"with ip link), and the basis of the bus load (default: {DEFAULT_BITRATE})",
    )
    if not adapter_options:
        return
    parser.add_argument("--fd", action="store_true", help="open the adapter in CAN FD mode")
    parser.add_argument("--data-bitrate", type=int, metavar="N", help="CAN FD data-phase bit/s")
    parser.add_argument(
        "--bus-kwargs",
        action=_BusKwargsAction,
        nargs="+",
        metavar="KEY=VALUE",
        help="more keyword arguments for python-can's can.Bus, as python-can's own tools take "
        "them, e.g. -i vector -c 0 --bus-kwargs app_name=CANalyzer serial=1234; the bus is "
        "still opened listen-only, whatever they say",
    )
    parser.add_argument(
        "--timing",
        action=_TimingAction,
        nargs="+",
        metavar="KEY=N",
        help="bit timing registers instead of --bitrate, as python-can's tools take them: "
        "f_clock=8000000 brp=1 tseg1=12 tseg2=3 sjw=1 nof_samples=1 (classic; 500 kbit/s), "
        "or f_clock nom_brp nom_tseg1 nom_tseg2 nom_sjw data_brp data_tseg1 data_tseg2 "
        "data_sjw (CAN FD); for adapters whose python-can driver takes a timing (pcan, "
        "kvaser, vector, ...)",
    )


def add_dbc_argument(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    parser.add_argument("--dbc", action="append", metavar="PATH", help=help)


def add_config_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,  # noqa: A002
    *,
    required: bool = False,
) -> None:
    parser.add_argument("--config", required=required, metavar="FILE", help=help)


def add_duration_argument(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    parser.add_argument("-d", "--duration", type=float, metavar="S", help=help)


def add_quiet_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display (it is shown on stderr only when stderr is a terminal)",
    )


# -- reading them back ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterOptions:
    """How to open one adapter, as the command line gave it (checked)."""

    interface: str
    channel: str
    bitrate: int | None = None
    data_bitrate: int | None = None
    fd: bool = False
    timing: can.BitTiming | can.BitTimingFd | None = None
    bus_kwargs: Mapping[str, BusKwargValue] = field(default_factory=dict)

    def open_listen_only(self) -> can.BusABC:
        """The bus, listen-only (:func:`candiag.ingest.live.open_listen_only_bus`)."""
        from candiag.ingest.live import open_listen_only_bus

        extra: dict[str, Any] = dict(self.bus_kwargs)
        if self.timing is not None:
            extra["timing"] = self.timing
        return open_listen_only_bus(
            self.interface, self.channel, self.bitrate, self.data_bitrate, self.fd, **extra
        )


def adapter_options(args: argparse.Namespace) -> AdapterOptions:
    """The checked adapter options of ``args``; a timing gives the bitrate(s) it stands for."""
    bitrate: int | None = args.bitrate
    data_bitrate: int | None = args.data_bitrate
    fd = bool(args.fd)
    for option, value in (("--bitrate", bitrate), ("--data-bitrate", data_bitrate)):
        if value is not None and value <= 0:
            raise InputError(f"{option} must be a positive number of bit/s, got {value}")
    bus_kwargs = dict(getattr(args, "bus_kwargs", None) or {})
    _refuse_mode_switches(bus_kwargs)
    timing = _bit_timing(args.timing) if getattr(args, "timing", None) else None
    if timing is not None:
        import can

        nominal = timing.nom_bitrate if isinstance(timing, can.BitTimingFd) else timing.bitrate
        if bitrate is not None and bitrate != nominal:
            raise InputError(
                f"--bitrate {bitrate} and --timing ({nominal} bit/s) disagree; give one of them"
            )
        bitrate = nominal
        if isinstance(timing, can.BitTimingFd):
            if data_bitrate is not None and data_bitrate != timing.data_bitrate:
                raise InputError(
                    f"--data-bitrate {data_bitrate} and --timing ({timing.data_bitrate} bit/s "
                    "data phase) disagree; give one of them"
                )
            fd, data_bitrate = True, timing.data_bitrate
    return AdapterOptions(
        interface=args.interface,
        channel=args.channel,
        bitrate=bitrate,
        data_bitrate=data_bitrate,
        fd=fd,
        timing=timing,
        bus_kwargs=bus_kwargs,
    )


def _refuse_mode_switches(bus_kwargs: Mapping[str, BusKwargValue]) -> None:
    """Keywords that would take a controller out of listen-only: an error, not a surprise
    (open_listen_only_bus overrides them anyway)."""
    from candiag.errors import SafetyError
    from candiag.ingest.live import LISTEN_ONLY_KEYS

    refused = sorted(set(bus_kwargs) & LISTEN_ONLY_KEYS)
    if refused:
        raise SafetyError(
            f"--bus-kwargs {', '.join(refused)}: candiag opens every bus listen-only and "
            f"{'this' if len(refused) == 1 else 'these'} would change the controller's mode; "
            "leave it out"
        )


def _bit_timing(values: Mapping[str, int]) -> can.BitTiming | can.BitTimingFd:
    import can

    try:
        if set(TIMING_FD_KEYS) <= set(values):
            return can.BitTimingFd(**{k: values[k] for k in TIMING_FD_KEYS}, strict=False)
        return can.BitTiming(**{k: values[k] for k in TIMING_KEYS}, strict=False)
    except ValueError as err:
        raise InputError(f"--timing: {err}") from None
