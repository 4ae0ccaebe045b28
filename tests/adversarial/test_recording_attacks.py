"""Recordings meet what is already on the disk (issue 13 §1 item 15): a rotation that reaches
an existing numbered file takes the next free number (never overwrites, never stops), and an
output in a folder that does not exist is named as such, not as a full disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candiag.capture import CandumpWriter, read_capture
from candiag.capture.metadata import RecordingMetadata
from candiag.ingest.frames import FrameBatch
from tests.adversarial.bounded import run_bounded

PRECIOUS = "(1.000000) can9 7FF#DEADBEEF\n"


def _batch(n: int, start: int = 0) -> FrameBatch:
    k = np.arange(start, start + n)
    data = np.zeros((n, 8), np.uint8)
    data[:, 0] = k % 256
    return FrameBatch(
        timestamp=1_700_000_000.0 + k * 0.001,
        can_id=(k % 0x7FF).astype(np.uint32),
        flags=np.zeros(n, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def _record(writer: CandumpWriter, batches: int, per_batch: int = 200) -> None:
    with writer:
        for b in range(batches):
            writer.write(_batch(per_batch, b * per_batch))
            writer.flush()  # gzip: the on-disk size is known after a flush


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_rotation_passes_over_a_file_that_appeared_meanwhile(tmp_path: Path, suffix: str) -> None:
    taken = tmp_path / f"x.0002{suffix}"
    writer = CandumpWriter(tmp_path / f"x{suffix}", rotate_bytes=4_000, fsync=False)
    taken.write_text(PRECIOUS)  # e.g. copied in while the recording runs
    _record(writer, 6)
    names = [p.name for p in writer.files]
    assert names[:2] == [f"x.0001{suffix}", f"x.0003{suffix}"] and taken.name not in names
    assert taken.read_text() == PRECIOUS  # never overwritten
    frames = sum(len(read_capture(p)[0]) for p in writer.files)
    assert frames == writer.frames_written == 1200  # the recording went on


def test_a_new_rotating_recording_starts_after_the_existing_numbers(tmp_path: Path) -> None:
    for n in (1, 2, 7):
        (tmp_path / f"x.{n:04d}.log").write_text(PRECIOUS)
    (tmp_path / "x.0008.log.meta.json").write_text("{}")  # a sidecar left alone
    metadata = RecordingMetadata.single(channel="can0", interface="virtual", bitrate=125_000)
    writer = CandumpWriter(tmp_path / "x.log", rotate_bytes=4_000, fsync=False, metadata=metadata)
    _record(writer, 3)
    assert [p.name for p in writer.files][:2] == ["x.0009.log", "x.0010.log"]
    assert all((tmp_path / f"x.{n:04d}.log").read_text() == PRECIOUS for n in (1, 2, 7))
    assert (tmp_path / "x.0008.log.meta.json").read_text() == "{}"


def test_a_sidecar_that_appeared_meanwhile_is_passed_over_too(tmp_path: Path) -> None:
    metadata = RecordingMetadata.single(channel="can0", interface="virtual", bitrate=125_000)
    writer = CandumpWriter(tmp_path / "x.log", rotate_bytes=4_000, fsync=False, metadata=metadata)
    (tmp_path / "x.0002.log.meta.json").write_text("{}")
    _record(writer, 3)
    assert [p.name for p in writer.files][:2] == ["x.0001.log", "x.0003.log"]
    assert (tmp_path / "x.0002.log.meta.json").read_text() == "{}"


@pytest.mark.parametrize(
    "args",
    [
        ["record", "-i", "virtual", "-c", "attack", "-o", "{missing}/x.log"],
        ["simulate", "-o", "{missing}/x.log", "-d", "1"],
        ["decode", "{capture}", "-o", "{missing}/x.jsonl"],
    ],
    ids=["record", "simulate", "decode"],
)
def test_an_output_in_a_missing_folder_says_the_folder_does_not_exist(
    tmp_path: Path, args: list[str]
) -> None:
    capture = tmp_path / "c.log"
    capture.write_text("(1.000000) can0 123#01\n")
    missing = tmp_path / "no" / "such" / "dir"
    argv = [a.format(missing=missing, capture=capture) for a in args]
    result = run_bounded(argv)
    assert result.code == 2, result.stderr
    assert f"the folder {missing} does not exist" in result.stderr
    assert "disk space" not in result.stderr
    assert not missing.exists()


def test_the_writer_names_a_missing_folder_too(tmp_path: Path) -> None:
    """The monitor's recordings and the daemon open writers without the CLI's check."""
    from candiag.errors import RecordingError

    missing = tmp_path / "gone"
    with pytest.raises(RecordingError) as info:
        CandumpWriter(missing / "x.log.gz")
    assert f"the folder {missing} does not exist" in str(info.value)
    assert "disk space" not in str(info.value) and "last flush" not in str(info.value)
