"""Recording metadata: the record, the gzip comment and sidecar, every recorder, and the real
candump readers (python-can, cantools, can-utils, gzip) still reading candiag's files."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import can
import numpy as np
import pytest
from external_tools import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from candiag.capture import CandumpWriter, read_capture
from candiag.capture.metadata import (
    BusMetadata,
    MetadataError,
    MetadataReading,
    RecordingMetadata,
    gzip_comment,
    read_recording_metadata,
    sidecar_path,
    write_sidecar,
)
from candiag.capture.recorder import live_bus_metadata
from candiag.cli import main
from candiag.errors import RecordingError
from candiag.health.bitrate import infer_bitrate
from candiag.health.linkstats import parse_link_json
from candiag.ingest.frames import FrameBatch
from candiag.sim.charger import ChargerSimulator, SimConfig

META = RecordingMetadata.single(
    channel="can0", interface="pcan", bitrate=125_000, listen_only=True
).stamped(1_767_225_600.0)


def sim_batch(seconds: float = 2.0, bitrate: int = 125_000) -> FrameBatch:
    sim = ChargerSimulator(SimConfig(bitrate=bitrate))
    return FrameBatch.concat(list(sim.chunks(seconds)))


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------
def test_text_round_trip_and_shape() -> None:
    text = META.to_text()
    assert "\n" not in text and text.isascii()
    assert json.loads(text) == {
        "candiag_recording": 1,
        "candiag_version": META.candiag_version,
        "started_utc": "2026-01-01T00:00:00Z",
        "buses": [
            {
                "channel": "can0",
                "interface": "pcan",
                "bitrate": 125_000,
                "data_bitrate": None,
                "listen_only": True,
            }
        ],
    }
    assert RecordingMetadata.parse(text) == META


def test_lookups_per_channel() -> None:
    two = RecordingMetadata(
        (BusMetadata("can0", "socketcan", 125_000), BusMetadata("can1", "socketcan", 500_000))
    )
    assert two.bitrate_for("can1") == 500_000 and two.bitrate_for("can9") is None
    assert two.bitrate is None  # they differ
    assert META.bitrate_for("anything") == 125_000  # one bus answers for any channel name
    assert META.bitrate == 125_000
    unknown = RecordingMetadata.single(channel="vcan0", interface="socketcan", bitrate=None)
    assert unknown.bitrate is None and unknown.bitrate_for("vcan0") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ("[1, 2]", "not a candiag recording record"),
        ('{"buses": []}', "not a candiag recording record"),
        ('{"candiag_recording": "1", "buses": []}', "positive integer"),
        ('{"candiag_recording": 2, "buses": []}', "newer candiag"),
        ('{"candiag_recording": 1, "buses": []}', "non-empty list"),
        ('{"candiag_recording": 1, "candiag_version": "x", "buses": [7]}', "must be an object"),
        (
            '{"candiag_recording": 1, "candiag_version": "x", "buses": [{"channel": "can0", '
            '"interface": "pcan", "bitrate": 125000.5}]}',
            "'bitrate' must be bit/s",
        ),
        (
            '{"candiag_recording": 1, "candiag_version": "x", "buses": [{"channel": "can0", '
            '"interface": "pcan", "bitrate": true}]}',
            "'bitrate' must be bit/s",
        ),
        (
            '{"candiag_recording": 1, "candiag_version": "x", "buses": [{"channel": "", '
            '"interface": "pcan", "bitrate": 1}]}',
            "'channel' must be a text",
        ),
        (
            '{"candiag_recording": 1, "candiag_version": "x", "buses": [{"channel": "c", '
            '"interface": "pcan", "bitrate": 1, "listen_only": "yes"}]}',
            "'listen_only' must be",
        ),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_malformed_records_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(MetadataError, match=problem):
        RecordingMetadata.parse(text)


# --------------------------------------------------------------------------------------------
# Where it is kept, and reading it back without ever raising
# --------------------------------------------------------------------------------------------
def gzip_member(
    comment: bytes | None, payload: bytes, *, name: bytes = b"", extra: bytes = b""
) -> bytes:
    """A gzip member built by hand (RFC 1952), independent of the writer under test."""
    flags = (0x10 if comment is not None else 0) | (0x08 if name else 0) | (0x04 if extra else 0)
    out = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    if extra:
        out += struct.pack("<H", len(extra)) + extra
    if name:
        out += name + b"\0"
    if comment is not None:
        out += comment + b"\0"
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(payload) + deflate.flush()
    return out + body + struct.pack("<II", zlib.crc32(payload), len(payload))


def test_reads_the_gzip_comment_after_extra_and_name_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.log.gz"
    path.write_bytes(
        gzip_member(META.to_text().encode(), b"", name=b"x.log", extra=b"ab\x02\x00xy")
    )
    reading = read_recording_metadata(path)
    assert reading.metadata == META and reading.source == "gzip comment" and not reading.problem


def test_reads_the_sidecar_of_a_log_and_of_a_log_compressed_later(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("(1700000000.000000) can0 123#\n")
    write_sidecar(log, META)
    assert sidecar_path(log).name == "x.log.meta.json"
    assert read_recording_metadata(log).metadata == META
    subprocess.run(["gzip", str(log)], check=True)  # gzip x.log -> x.log.gz, sidecar stays
    reading = read_recording_metadata(tmp_path / "x.log.gz")
    assert reading.metadata == META and reading.source == "sidecar x.log.meta.json"


def test_no_metadata_is_none_without_a_problem(tmp_path: Path) -> None:
    plain = tmp_path / "p.log"
    plain.write_text("(1700000000.000000) can0 123#\n")
    packed = tmp_path / "p.log.gz"
    packed.write_bytes(gzip.compress(b"(1700000000.000000) can0 123#\n"))
    for path in (plain, packed):
        assert read_recording_metadata(path) == MetadataReading(None)


def test_junk_is_ignored_and_reported(tmp_path: Path) -> None:
    foreign = tmp_path / "f.log.gz"
    foreign.write_bytes(gzip_member(b"made by some other tool", b""))
    reading = read_recording_metadata(foreign)
    assert (
        reading.metadata is None and "not JSON" in reading.problem and "ignored" in reading.problem
    )
    broken = tmp_path / "b.log"
    broken.write_text("")
    sidecar_path(broken).write_text('{"candiag_recording": 1, "buses": [{"bitrate": -5}]}')
    reading = read_recording_metadata(broken)
    assert reading.metadata is None and "b.log.meta.json" in reading.problem
    sidecar_path(broken).write_bytes(b"\xff\xfe")
    assert "not UTF-8" in read_recording_metadata(broken).problem
    sidecar_path(broken).write_bytes(b" " * 100_000)
    assert "longer than" in read_recording_metadata(broken).problem
    missing = read_recording_metadata(tmp_path / "nope.log.gz")
    assert missing.metadata is None and "cannot read" in missing.problem


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=300), comment=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(head: bytes, comment: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "r.log.gz"
        path.write_bytes(
            b"\x1f\x8b\x08\x1c" + head[:6] + comment.replace(b"\0", b"") + b"\0" + head
        )
        reading = read_recording_metadata(path)
        assert reading.metadata is None or reading.problem == ""
        path.write_bytes(head)
        read_recording_metadata(path)
        sidecar_path(Path(directory) / "s.log").write_bytes(comment)
        read_recording_metadata(Path(directory) / "s.log")


def test_sidecar_is_never_overwritten_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("")
    write_sidecar(log, META)
    with pytest.raises(FileExistsError):
        write_sidecar(log, RecordingMetadata.single(channel="c", interface="i", bitrate=1))
    assert read_recording_metadata(log).metadata == META
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.meta.json"]


# --------------------------------------------------------------------------------------------
# The writer: every file carries it, durability unchanged
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_every_rotated_file_carries_the_metadata(tmp_path: Path, suffix: str) -> None:
    batch = sim_batch(20.0)
    wall = iter(float(1_767_225_600 + k) for k in range(100))
    with CandumpWriter(
        tmp_path / f"rec{suffix}",
        rotate_bytes=30_000 if suffix == ".log" else 4_000,
        fsync=False,
        metadata=META,
        wall_clock=lambda: next(wall),
    ) as writer:
        for start in range(0, len(batch), 300):
            writer.write(batch.take(slice(start, start + 300)))
            writer.flush()
    assert len(writer.files) >= 3
    starts = []
    for path in writer.files:
        reading = read_recording_metadata(path)
        assert reading.metadata is not None and reading.problem == ""
        assert reading.metadata.buses == META.buses
        starts.append(reading.metadata.started_utc)
        assert read_capture(path)[1].malformed == 0
    assert len(set(starts)) == len(starts)  # each file stamped when it was opened
    back = FrameBatch.concat([read_capture(p)[0] for p in writer.files])
    np.testing.assert_array_equal(back.can_id, batch.can_id)
    if suffix == ".log":
        assert sorted(p.name for p in tmp_path.glob("*.meta.json")) == [
            f"{p.name}.meta.json" for p in writer.files
        ]
    else:
        assert not list(tmp_path.glob("*.meta.json"))


def test_gzip_stream_is_what_gzip_writes(tmp_path: Path) -> None:
    batch = sim_batch(3.0)
    with CandumpWriter(
        tmp_path / "a.log.gz", fsync=False, metadata=META, wall_clock=lambda: 1_767_225_600.0
    ) as writer:
        writer.write(batch)
    with CandumpWriter(tmp_path / "b.log", fsync=False) as plain:
        plain.write(batch)
    text = (tmp_path / "b.log").read_bytes()
    assert gzip.decompress((tmp_path / "a.log.gz").read_bytes()) == text
    assert gzip_comment(tmp_path / "a.log.gz") == META.to_text()


def test_flushed_gzip_with_metadata_reads_while_open(tmp_path: Path) -> None:
    path = tmp_path / "live.log.gz"
    writer = CandumpWriter(path, metadata=META, wall_clock=lambda: 1_767_225_600.0)
    try:
        assert read_recording_metadata(path).metadata == META  # before any frame
        writer.write(sim_batch(1.0))
        writer.flush()
        back, stats = read_capture(path)  # no trailer yet, as after a power cut
        assert stats.truncated and stats.malformed == 0 and len(back) > 0
    finally:
        writer.close()


def test_existing_sidecar_refuses_the_recording(tmp_path: Path) -> None:
    sidecar_path(tmp_path / "x.log").write_text("precious")
    with pytest.raises(RecordingError, match="metadata file already exists"):
        CandumpWriter(tmp_path / "x.log", metadata=META)
    assert not (tmp_path / "x.log").exists()
    assert sidecar_path(tmp_path / "x.log").read_text() == "precious"


def test_discard_removes_the_log_and_its_sidecar(tmp_path: Path) -> None:
    writer = CandumpWriter(tmp_path / "x.log", metadata=META)
    writer.discard()
    assert list(tmp_path.iterdir()) == []
    writer = CandumpWriter(tmp_path / "y.log.gz", metadata=META)
    writer.write(sim_batch(0.5))
    with pytest.raises(RecordingError, match="holds recorded frames"):
        writer.discard()
    writer.close()


def test_disk_full_keeps_the_header_and_metadata(tmp_path: Path) -> None:
    script = f"""
import resource, signal, sys
from candiag.errors import RecordingError
from candiag.capture import CandumpWriter
from candiag.capture.metadata import RecordingMetadata
from candiag.sim.charger import ChargerSimulator
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
meta = RecordingMetadata.single(channel="can0", interface="pcan", bitrate=250000)
writer = CandumpWriter({str(tmp_path / "full.log.gz")!r}, metadata=meta)
try:
    for batch in ChargerSimulator().chunks(60.0, chunk_seconds=0.5):
        writer.write(batch)
except RecordingError as err:
    print(err)
    sys.exit(4)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4, done.stderr
    assert "cannot write the recording (File too large)" in done.stdout
    # Cut back to the last flush point, or to the header if none came yet: never torn.
    reading = read_recording_metadata(tmp_path / "full.log.gz")
    assert reading.metadata is not None and reading.metadata.bitrate == 250_000
    assert read_capture(tmp_path / "full.log.gz")[1].malformed == 0


# --------------------------------------------------------------------------------------------
# Standard readers still accept candiag's files
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FrameBatch]:
    path = tmp_path_factory.mktemp("tools") / "sim.log.gz"
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "simulate", "-o", str(path), "-d", "3", "-b", "250000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    batch, stats = read_capture(path)
    assert stats.malformed == 0 and len(batch) > 500
    assert read_recording_metadata(path).metadata is not None
    return path, batch


def test_gzip_and_zcat_accept_it(recorded: tuple[Path, FrameBatch]) -> None:
    path, batch = recorded
    subprocess.run([require_tool("gzip"), "-t", str(path)], check=True, timeout=30)
    text = subprocess.run(
        [require_tool("zcat"), str(path)], capture_output=True, check=True, timeout=30
    ).stdout
    assert text.count(b"\n") == len(batch) and text.startswith(b"(")


def test_python_can_log_reader_accepts_it(recorded: tuple[Path, FrameBatch]) -> None:
    path, batch = recorded
    messages = list(can.LogReader(path))
    assert len(messages) == len(batch)
    assert [m.arbitration_id for m in messages] == batch.can_id.tolist()
    assert np.allclose([m.timestamp for m in messages], batch.timestamp, atol=1e-6)


def test_cantools_decode_accepts_it(recorded: tuple[Path, FrameBatch]) -> None:
    path, batch = recorded
    dbc = Path(__file__).parents[1] / "candiag" / "data" / "dbc" / "contactors.dbc"
    text = gzip.decompress(path.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "cantools", "decode", str(dbc)],
        input=text, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.count("\n") >= len(batch) and "ContactorFeedback(" in out


@pytest.mark.parametrize("tool", ["log2asc", "log2long"])
def test_can_utils_accept_it_through_zcat(recorded: tuple[Path, FrameBatch], tool: str) -> None:
    path, batch = recorded
    command = [require_tool(tool), "can0"] if tool == "log2asc" else [require_tool(tool)]
    text = subprocess.run(
        [require_tool("zcat"), str(path)], capture_output=True, check=True, timeout=30
    ).stdout
    done = subprocess.run(command, input=text, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    frames = [
        line for line in done.stdout.decode().splitlines() if " can0 " in line or " Rx " in line
    ]
    assert len(frames) == len(batch)


def test_a_comment_line_is_why_plain_logs_use_a_sidecar(tmp_path: Path) -> None:
    """What the sidecar avoids: python-can and log2long refuse a log with a comment line."""
    log = tmp_path / "commented.log"
    log.write_text("# candiag metadata\n(1700000000.000000) can0 123#01\n")
    with pytest.raises(ValueError):
        list(can.LogReader(log))
    done = subprocess.run(
        [require_tool("log2long")], input=log.read_bytes(), capture_output=True, timeout=30
    )
    assert done.returncode != 0 and b"123" not in done.stdout


# --------------------------------------------------------------------------------------------
# The recorders
# --------------------------------------------------------------------------------------------
def test_live_bus_metadata_knows_only_what_is_known() -> None:
    link = parse_link_json(
        json.dumps(
            [
                {
                    "ifname": "can0",
                    "flags": ["UP", "LOWER_UP"],
                    "operstate": "UP",
                    "linkinfo": {
                        "info_kind": "can",
                        "info_data": {
                            "state": "ERROR-ACTIVE",
                            "bittiming": {"bitrate": 250000, "sample_point": "0.875"},
                        },
                    },
                }
            ]
        ),
        "can0",
    )
    kernel = live_bus_metadata("socketcan", "can0", 500_000, link_stats=lambda _: link)
    assert kernel == BusMetadata("can0", "socketcan", 250_000, None, None)  # python-can sets none
    assert live_bus_metadata("socketcan", "vcan0", None, link_stats=lambda _: None).bitrate is None
    pcan = live_bus_metadata("pcan", "PCAN_USBBUS1", 125_000, data_bitrate=2_000_000)
    assert pcan == BusMetadata("PCAN_USBBUS1", "pcan", 125_000, None, True)  # not FD: no data rate
    fd = live_bus_metadata("pcan", "PCAN_USBBUS1", 500_000, data_bitrate=2_000_000, fd=True)
    assert fd.data_bitrate == 2_000_000
    assert live_bus_metadata("pcan", "PCAN_USBBUS1", None).bitrate is None  # driver default


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_record_cli_writes_the_metadata(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"rec{suffix}"
    code = main(
        ["record", "-i", "virtual", "-c", "rec-meta", "-b", "250000", "-o", str(out),
         "--duration", "0.2"]
    )  # fmt: skip
    assert code == 0
    assert "bitrate 250000 bit/s (as opened), kept in the recording's metadata" in (
        capsys.readouterr().err
    )
    reading = read_recording_metadata(out)
    assert reading.metadata is not None
    assert reading.metadata.buses == (BusMetadata("rec-meta", "virtual", 250_000, None, None),)
    assert reading.source == (
        "gzip comment" if suffix == ".log.gz" else "sidecar rec.log.meta.json"
    )


def test_record_cli_without_bitrate_records_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rec.log.gz"
    assert (
        main(["record", "-i", "virtual", "-c", "rec-meta2", "-o", str(out), "--duration", "0.1"])
        == 0
    )
    assert "bitrate not known to candiag" in capsys.readouterr().err
    metadata = read_recording_metadata(out).metadata
    assert metadata is not None and metadata.bitrate is None


def test_record_cli_missing_adapter_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "none.log"
    code = main(["record", "-i", "socketcan", "-c", "can7", "-o", str(out)])
    assert code == 3
    assert list(tmp_path.iterdir()) == []  # neither the log nor its sidecar


@pytest.mark.parametrize("bitrate", [125_000, 250_000, 500_000])
def test_simulated_capture_states_and_shows_its_bitrate(tmp_path: Path, bitrate: int) -> None:
    out = tmp_path / "sim.log.gz"
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "simulate", "-o", str(out), "-d", "20",
         "-b", str(bitrate), "--seed", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metadata = read_recording_metadata(out).metadata
    assert metadata is not None
    assert metadata.buses == (BusMetadata("can0", "simulator", bitrate, None, None),)
    # The timestamps alone (as written, to the microsecond) tell the same rate.
    batch, _ = read_capture(out)
    inference = infer_bitrate(batch)
    assert inference.bitrate == bitrate, inference.reason
    assert inference.timestamps == "frame end"


def test_simulate_uses_the_one_default(tmp_path: Path) -> None:
    from candiag.health.bitrate import DEFAULT_BITRATE

    out = tmp_path / "d.log"
    assert main(["simulate", "-o", str(out), "-d", "1"]) == 0
    metadata = read_recording_metadata(out).metadata
    assert metadata is not None and metadata.bitrate == DEFAULT_BITRATE
    help_text = subprocess.run(
        [sys.executable, "-m", "candiag", "simulate", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"(default: {DEFAULT_BITRATE}," in " ".join(help_text.split())
    assert os.path.exists(out)
