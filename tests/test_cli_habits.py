"""The command line as technicians use it: shared arguments, help, pipes, progress, driver errors.

The end-to-end tests run the real ``candiag`` in a subprocess (pipes, a pty for stderr);
the unit tests check the pieces (``--bus-kwargs``/``--timing`` parsing against python-can's
own rules, the help formatter, the PCAN clock).
"""

from __future__ import annotations

import argparse
import ctypes.util
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import can
import pytest

from candiag.cli import build_parser, main
from candiag.cli.args import (
    OWNED_BUS_KWARGS,
    AdapterOptions,
    adapter_options,
    cast_from_string,
    parse_bus_kwargs,
    parse_timing,
)
from candiag.errors import InputError, SafetyError
from candiag.health.bitrate import DEFAULT_BITRATE

CANDIAG = [sys.executable, "-m", "candiag"]
TIMING_500K = ["f_clock=8000000", "brp=1", "tseg1=12", "tseg2=3", "sjw=1", "nof_samples=1"]


def cli(
    *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [*CANDIAG, *args], input=stdin, capture_output=True, timeout=timeout, env=env
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of the simulated charger with a fault (findings to show), candump -L text."""
    path = tmp_path_factory.mktemp("habits") / "charger-capture-with-a-long-name.log"
    assert main(["simulate", "-o", str(path), "-d", "30", "--scenario", "module_offline"]) == 0
    return path


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser of the command line, nested ones (``modbus read``) included."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{prefix}{name}"] = sub
                    walk(f"{prefix}{name} ", sub)

    walk("", build_parser())
    return found


# -- one meaning per letter -------------------------------------------------------------------------
def test_each_short_flag_means_one_thing_in_every_command() -> None:
    meaning: dict[str, tuple[str, str]] = {}
    for name, parser in subcommand_parsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                if len(flag) == 2 and flag != "-h":
                    seen = meaning.setdefault(flag, (action.dest, name))
                    assert seen[0] == action.dest, (
                        f"{flag} is --{seen[0]} in {seen[1]} but --{action.dest} in {name}"
                    )
    assert meaning["-c"][0] == "channel" and meaning["-i"][0] == "interface"
    assert meaning["-b"][0] == "bitrate" and meaning["-d"][0] == "duration"


def test_the_shared_options_are_offered_where_they_apply() -> None:
    parsers = subcommand_parsers()

    def options(name: str) -> set[str]:
        return {f for a in parsers[name]._actions for f in a.option_strings}

    for name in ("monitor", "record"):
        assert {"-i", "-c", "-b", "--bus-kwargs", "--timing", "--fd"} <= options(name)
    for name in ("monitor", "analyze", "decode"):
        assert "--dbc" in options(name)
    for name in ("monitor", "analyze", "demo", "run"):
        assert "--config" in options(name)
    for name in ("monitor", "record", "demo", "simulate"):
        assert {"-d", "--duration"} <= options(name)
    for name in ("analyze", "decode", "simulate"):
        assert {"-q", "--quiet"} <= options(name)


@pytest.mark.slow
def test_run_takes_config_and_names_the_fix_for_an_old_dash_c(tmp_path: Path) -> None:
    done = cli("run", "-c", "/etc/candiag/candiag.toml")
    assert done.returncode == 2
    assert "candiag run --config /etc/candiag/candiag.toml" in done.stderr
    assert "Traceback" not in done.stderr
    unit = (Path(__file__).parents[1] / "systemd" / "candiag.service").read_text()
    assert "candiag run --config " in unit and " run -c " not in unit


def test_one_default_bitrate_in_the_help() -> None:
    for name in ("monitor", "simulate", "analyze"):  # record: only what it was opened at
        text = " ".join(subcommand_parsers()[name].format_help().split())
        assert str(DEFAULT_BITRATE) in text, name
    assert "125000" not in Path("candiag/cli/monitor.py").read_text()


# -- --bus-kwargs and --timing as python-can's own command line reads them ----------------------------
@pytest.mark.parametrize(
    "text", ["1", "-7", "+3", "0.5", "1e3", ".25e-2", "true", "False", "TRUE", "abc", "0x10", ""]
)
def test_bus_kwarg_values_are_cast_as_python_can_casts_them(text: str) -> None:
    from can.util import cast_from_string as python_can_cast

    assert cast_from_string(text) == python_can_cast(text)
    assert type(cast_from_string(text)) is type(python_can_cast(text))


def test_bus_kwargs_parse_and_refuse_what_other_options_own() -> None:
    assert parse_bus_kwargs(["app_name=CANalyzer", "serial=1234", "x=1.5", "y=true"]) == {
        "app_name": "CANalyzer",
        "serial": 1234,
        "x": 1.5,
        "y": True,
    }
    for key in OWNED_BUS_KWARGS:
        with pytest.raises(ValueError, match="not with --bus-kwargs"):
            parse_bus_kwargs([f"{key}=1"])
    for bad in ("novalue", "=3", "1abc=2", "a b=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_bus_kwargs([bad])


def test_bus_kwargs_never_switch_listen_only_off() -> None:
    for key in ("state", "driver_mode", "listen_only", "receive_own_messages"):
        args = build_parser().parse_args(
            ["record", "-i", "pcan", "-c", "X", "-o", "x.log", "--bus-kwargs", f"{key}=1"]
        )
        with pytest.raises(SafetyError, match="listen-only"):
            adapter_options(args)


def test_timing_gives_the_bitrate_and_must_agree_with_bitrate() -> None:
    base = ["record", "-i", "pcan", "-c", "X", "-o", "x.log", "--timing", *TIMING_500K]
    options = adapter_options(build_parser().parse_args(base))
    assert isinstance(options.timing, can.BitTiming) and options.bitrate == 500_000
    assert adapter_options(build_parser().parse_args([*base, "-b", "500000"])).bitrate == 500_000
    with pytest.raises(InputError, match="disagree"):
        adapter_options(build_parser().parse_args([*base, "-b", "250000"]))
    with pytest.raises(ValueError, match="incomplete"):
        parse_timing(["f_clock=8000000", "brp=1"])
    with pytest.raises(ValueError, match="unknown key"):
        parse_timing([*TIMING_500K, "bitrate=500000"])
    with pytest.raises(ValueError, match="KEY=INTEGER"):
        parse_timing(["f_clock=8MHz"])
    fd = [
        "f_clock=80000000", "nom_brp=1", "nom_tseg1=119", "nom_tseg2=40", "nom_sjw=40",
        "data_brp=1", "data_tseg1=29", "data_tseg2=10", "data_sjw=10",
    ]  # fmt: skip
    options = adapter_options(build_parser().parse_args([*base[:-6], *fd]))
    assert isinstance(options.timing, can.BitTimingFd) and options.fd
    assert (options.bitrate, options.data_bitrate) == (500_000, 2_000_000)


def test_bus_kwargs_and_timing_reach_python_can_and_the_bus_stays_listen_only() -> None:
    options = AdapterOptions(
        "virtual",
        "habits-kwargs",
        bus_kwargs={"preserve_timestamps": True, "rx_queue_size": 7},
        timing=can.BitTiming(8_000_000, 1, 12, 3, 1, 1),
    )
    bus = options.open_listen_only()
    try:
        assert bus.preserve_timestamps is True  # type: ignore[attr-defined]
        assert bus.queue.maxsize == 7  # type: ignore[attr-defined]
        with pytest.raises(SafetyError):
            bus.send(can.Message(arbitration_id=1))
    finally:
        bus.shutdown()


@pytest.mark.slow
def test_record_takes_timing_and_bus_kwargs_end_to_end(tmp_path: Path) -> None:
    from candiag.capture.metadata import read_recording_metadata

    out = tmp_path / "t.log.gz"
    done = cli(
        "record", "-i", "virtual", "-c", "habits-timing", "-o", str(out), "-d", "0.3",
        "--timing", *TIMING_500K, "--bus-kwargs", "rx_queue_size=100",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metadata = read_recording_metadata(out).metadata
    assert metadata is not None and metadata.buses[0].bitrate == 500_000
    refused = cli("record", "-i", "virtual", "-c", "x", "-o", str(tmp_path / "r.log"),
                  "--bus-kwargs", "bitrate=5")  # fmt: skip
    assert refused.returncode == 2 and "set with -b/--bitrate" in refused.stderr


# -- help -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_candiag_alone_prints_the_help() -> None:
    done = cli()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: candiag")
    for name in ("monitor", "record", "analyze", "decode", "simulate", "run", "examples:"):
        assert name in done.stdout


@pytest.mark.parametrize("name", sorted(subcommand_parsers()))
def test_every_help_has_a_description_examples_and_defaults_once(name: str) -> None:
    parser = subcommand_parsers()[name]
    text = parser.format_help()
    assert parser.description, f"{name} has no description"
    if name != "modbus" or "examples:" in text:
        assert "examples:" in text, f"{name} --help has no examples"
    flat = " ".join(text.split())
    assert "(default: None)" not in flat
    assert "(default: False)" not in flat
    for chunk in flat.split("(default")[1:]:
        assert "(default" not in chunk.split(")")[0]
    assert flat.count("default: the profile's") <= 4


def test_help_keeps_example_lines_whole() -> None:
    text = subcommand_parsers()["monitor"].format_help()
    assert "\n  candump -L can0 | candiag monitor -\n" in text


# -- scenario lists ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["simulate"], ["demo"], ["monitor"]])
def test_list_scenarios_is_complete_everywhere(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from candiag.sim.protocols.scenarios import protocol_scenario_names
    from candiag.sim.scenarios import meter_scenario_names, scenario_names

    assert main([*command, "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    names = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert set(scenario_names()) | set(meter_scenario_names()) <= names
    assert set(protocol_scenario_names()) <= names
    assert "candiag demo --scenario NAME" in out
    assert "candiag simulate --protocol" in out


def test_scenario_names_shown_where_they_are_accepted() -> None:
    from candiag.cli.scenarios import PROTOCOL_CHOICES, protocol_scenario_names
    from candiag.sim.protocols import PROTOCOL_NAMES
    from candiag.sim.protocols import scenarios as protocol_scenarios
    from candiag.sim.scenarios import all_scenario_names, scenario_names

    assert set(PROTOCOL_CHOICES) == set(PROTOCOL_NAMES)
    assert protocol_scenario_names() == protocol_scenarios.protocol_scenario_names()
    parsers = subcommand_parsers()
    for name, expected in (
        ("simulate", scenario_names() + protocol_scenario_names()),
        ("demo", all_scenario_names()),
        ("monitor", all_scenario_names()),
    ):
        flat = " ".join(parsers[name].format_help().split())
        for scenario in expected:
            assert scenario in flat, (name, scenario)


def test_simulate_sends_a_meter_scenario_to_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-o", "never.log", "-d", "1", "--scenario", "meter_crc_noise"]) == 2
    assert "candiag demo --scenario meter_crc_noise" in capsys.readouterr().err
    assert not Path("never.log").exists()


# -- pipes -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_analyze_and_decode_read_standard_input(capture: Path) -> None:
    data = capture.read_bytes()
    analyzed = cli("analyze", "-", "--json", "-", stdin=data)
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads(analyzed.stdout)
    assert report["capture"]["path"] == "<stdin>" and report["capture"]["format"] == "candump"
    assert report["frames"]["total"] == data.count(b"\n")
    decoded = cli("decode", "-", stdin=gzip.compress(data))  # detected from the content
    assert decoded.returncode == 0, decoded.stderr
    assert len(decoded.stdout.splitlines()) > 1000
    assert json.loads(decoded.stdout.splitlines()[0])["channel"] == "can0"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        "analyze {capture} --json - | head -c 100",
        "decode {capture} | head -n 2",
        "analyze {capture} | head -n 1",
        "simulate --list-scenarios | head -n 1",
        "decode - < {capture} | head -n 1",
    ],
)
def test_a_closed_pipe_ends_quietly(capture: Path, command: str) -> None:
    script = f"{' '.join(CANDIAG)} {command.format(capture=capture)}; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout


@pytest.mark.slow
def test_json_dash_writes_stdout_and_files_end_with_wrote(capture: Path, tmp_path: Path) -> None:
    report, html = tmp_path / "report.json", tmp_path / "report.html"
    done = cli("analyze", str(capture), "--json", str(report), "--html", str(html))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-2:] == [f"wrote {report}", f"wrote {html}"]
    assert "wrote" not in done.stdout
    stdout_json = cli("analyze", str(capture), "--json", "-")
    assert json.loads(stdout_json.stdout)["frames"] == json.loads(report.read_text())["frames"]
    jsonl = tmp_path / "d.jsonl"
    decoded = cli("decode", str(capture), "-o", str(jsonl))
    assert decoded.stderr.splitlines()[-1] == f"wrote {jsonl}"
    sim = tmp_path / "s.log"
    simulated = cli("simulate", "-o", str(sim), "-d", "2")
    assert simulated.stderr.splitlines()[-1] == f"wrote {sim}"


@pytest.mark.slow
def test_redirected_text_is_not_folded_at_80_columns(capture: Path) -> None:
    done = cli("analyze", str(capture))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "frames over" in first and "read as candump" in first and len(first) > 100
    fixes = [line for line in done.stdout.splitlines() if line.lstrip().startswith("fix:")]
    assert fixes and all(line.rstrip().endswith(".") for line in fixes)


def candump_feeder(seconds: float, channels: tuple[str, ...] = ("can0", "can1")) -> str:
    """A python one-liner printing candump -L lines with current timestamps, like candump."""
    return (
        "import sys,time\n"
        f"end=time.time()+{seconds}\n"
        "while time.time()<end:\n"
        "    t=time.time()\n"
        f"    for ch in {channels!r}:\n"
        "        sys.stdout.write(f'({t:.6f}) {ch} 123#0011223344556677\\n')\n"
        "    sys.stdout.flush(); time.sleep(0.02)\n"
    )


@pytest.mark.slow
def test_monitor_reads_candump_lines_from_a_pipe() -> None:
    feeder = subprocess.Popen([sys.executable, "-c", candump_feeder(6)], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            [*CANDIAG, "monitor", "-", "--duration", "2.5", "--interval", "0.5"],
            stdin=feeder.stdout, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        assert feeder.stdout is not None
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
    assert done.returncode == 0, done.stderr
    assert "can0 from standard input" in done.stdout
    lines = [line for line in done.stdout.splitlines() if " bus can0:" in line]
    assert lines and "can1" not in "".join(lines)
    fps = [float(line.split(" fps")[0].rsplit(" ", 1)[1]) for line in lines]
    assert max(fps) > 20  # ~50 frames/s of can0 arrive; can1's are not counted in


@pytest.mark.slow
def test_monitor_dash_says_what_it_reads() -> None:
    wrong = cli("monitor", "-", stdin=b"Timestamp,ID,Data\n1,2,3\n")
    assert wrong.returncode == 2 and "reads candump -L lines" in wrong.stderr
    empty = cli("monitor", "-", stdin=b"")
    assert empty.returncode == 2 and "ended before its first line" in empty.stderr
    file = cli("monitor", "some.log")
    assert file.returncode == 2 and "candiag analyze some.log" in file.stderr


def test_stream_reader_keeps_one_channel_and_counts_the_others(tmp_path: Path) -> None:
    from candiag.capture.stream import StreamReader

    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"(1.000000) can1 123#00\n(1.100000) can0 124#01\nnot a line\n")
    reader = StreamReader(os.fdopen(read_fd, "rb"))
    try:
        assert reader.first_line() == "can1"
        reader.start()
        os.write(write_fd, b"(1.200000) can1 125#0102\n")
        os.close(write_fd)
        deadline = time.monotonic() + 5
        while reader.up and time.monotonic() < deadline:
            time.sleep(0.01)
        batch = reader.drain()
        assert batch.can_id.tolist() == [0x123, 0x125]
        assert reader.other_channels == {"can0": 1}
        assert reader.stats.malformed == 1
        assert not reader.up and "ended" in (reader.last_error or "")
    finally:
        reader.stop()


# -- progress -----------------------------------------------------------------------------------------
def run_with_terminal_stderr(*args: str) -> tuple[int, str, bytes]:
    """Run candiag with stderr on a pseudo-terminal (stdout a pipe); what each received."""
    import fcntl  # POSIX only, like the test using it
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 100x30
    proc = subprocess.Popen([*CANDIAG, *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), out, terminal


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_progress_on_a_terminal_only_and_never_with_quiet(capture: Path, tmp_path: Path) -> None:
    code, out, terminal = run_with_terminal_stderr("analyze", str(capture))
    assert code == 0 and b"analyzing" in terminal and b"\xe2\x94\x81" in terminal  # the bar
    assert "analyzing" not in out and "\x1b" not in out  # stdout keeps only the summary
    code, _, terminal = run_with_terminal_stderr("analyze", str(capture), "--quiet")
    assert code == 0 and b"analyzing" not in terminal
    code, _, terminal = run_with_terminal_stderr("decode", str(capture), "-o", "/dev/null")
    assert code == 0 and b"decoding" in terminal
    code, _, terminal = run_with_terminal_stderr(
        "simulate", "-o", str(tmp_path / "p.log"), "-d", "30"
    )
    assert code == 0 and b"simulating 30 s" in terminal
    piped = cli("analyze", str(capture))  # stderr a pipe: no bar
    assert "analyzing" not in piped.stderr and "\x1b" not in piped.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "{capture}", "--html", "/nonexistent/dir/r.html"],
        ["analyze", "{capture}", "--json", "/nonexistent/dir/r.json"],
        ["decode", "{capture}", "-o", "/nonexistent/dir/d.jsonl"],
        ["simulate", "-o", "/nonexistent/dir/s.log", "-d", "7200"],
    ],
)
def test_output_paths_are_checked_before_the_work(capture: Path, args: list[str]) -> None:
    started = time.monotonic()
    done = cli(*(a.format(capture=capture) for a in args))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # 2 h of simulation would take far longer


# -- record without frames, drivers missing ---------------------------------------------------------
@pytest.mark.slow
def test_record_says_when_no_frame_arrives(tmp_path: Path) -> None:
    done = cli(
        "record", "-i", "virtual", "-c", "habits-silent", "-o", str(tmp_path / "q.log"),
        "-d", "1.2", "--no-frame-warning", "0.3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "no frame" in line]
    assert len(said) == 1
    assert "only carries frames within one process" in said[0]
    assert "vcan" in said[0] and "--demo" in said[0]


def test_no_frame_text_for_an_adapter_names_bitrate_and_cable() -> None:
    from candiag.cli.record import no_frame_text

    text = no_frame_text("pcan", "PCAN_USBBUS1", 5)
    assert "bitrate" in text and "cable" in text and "vcan" in text and "--demo" in text
    assert "ip link set can0 type can bitrate" in no_frame_text("socketcan", "can0", 5)


def _library_absent(interface: str) -> bool:
    from candiag.ingest.live import driver_missing

    if interface == "pcan":
        return ctypes.util.find_library("pcanbasic") is None
    return bool(driver_missing(interface))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interface", "said", "never"),
    [
        ("kvaser", "Kvaser CANlib is not installed", ("NameError", "canGetNumberOfChannels")),
        ("vector", "Vector XL library is not installed", ("Could not import vxlapi",)),
        ("pcan", "PCAN-Basic", ("uptime library",)),
    ],
)
def test_missing_vendor_library_is_one_clear_line(
    tmp_path: Path, interface: str, said: str, never: tuple[str, ...]
) -> None:
    if not _library_absent(interface):
        pytest.skip(f"the {interface} vendor library is installed here")
    for argv in (
        ["record", "-i", interface, "-c", "0", "-o", str(tmp_path / f"{interface}.log")],
        ["monitor", "-i", interface, "-c", "0", "--duration", "1"],
    ):
        done = cli(*argv)
        assert done.returncode == 3, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("candiag: error:"), done.stderr
        assert said in lines[0] and "install" in lines[0]
        for text in never:
            assert text not in done.stderr
        assert "Traceback" not in done.stderr


def test_pcan_timestamps_count_from_the_epoch_without_uptime() -> None:
    from can.interfaces.pcan import pcan

    from candiag.ingest.live import _pcan_epoch_timestamps, boot_epoch

    saved = pcan.boottimeEpoch
    try:
        pcan.boottimeEpoch = 0
        _pcan_epoch_timestamps()
        booted = pcan.boottimeEpoch
        assert abs(booted - boot_epoch()) < 1.0
        assert 946_684_800 < booted < time.time()  # after 2000-01-01, before now
    finally:
        pcan.boottimeEpoch = saved


@pytest.mark.slow
def test_an_empty_recording_is_named_by_its_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e.log.gz"
    argv = ["record", "-i", "virtual", "-c", "habits-empty0", "-o", str(out), "-d", "0.2"]
    assert main(argv) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"wrote {out}"
    assert main(["analyze", str(out), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["capture"]["channels"] == ["habits-empty0"]  # not "can"


def test_the_parser_of_one_command_knows_only_it_and_help_knows_all() -> None:
    one = build_parser("check-config")
    assert one.parse_args(["check-config", "x.toml"]).command == "check-config"
    with pytest.raises(SystemExit):
        one.parse_args(["analyze", "x.log"])  # not registered: only the command asked for
    every = build_parser(None)
    assert every.parse_args(["analyze", "x.log"]).command == "analyze"


def test_a_mistyped_command_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["analyz", "x.log"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and "analyze" in err and "simulate" in err
