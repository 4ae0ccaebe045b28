"""The DBC cache (candiag/decode/dbc_cache.py): the same catalogue as reading the text,
without cantools when every file is kept, and never a stale or untrusted entry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from candiag.decode import dbc_cache
from candiag.decode.dbc import ChargerDatabase, load_dbc_paths, reference_dbc_dir
from candiag.decode.jsonl import choice_names
from candiag.errors import DbcError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(dbc_cache.ENV, str(folder))
    return folder


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + dbc_cache.SUFFIX)) if folder.exists() else []


def summary(db: ChargerDatabase) -> list[object]:
    """Everything a loaded catalogue holds but the cantools objects (not compared)."""
    return [db.messages, list(db.warnings), db.sources]


def copy_reference(tmp_path: Path) -> Path:
    folder = tmp_path / "dbc"
    shutil.copytree(reference_dbc_dir(), folder)
    return folder


def test_a_kept_file_loads_as_its_text_does(tmp_path: Path, cache: Path) -> None:
    folder = copy_reference(tmp_path)
    first = load_dbc_paths([folder])
    assert len(entries(cache)) == len(list(folder.glob("*.dbc")))
    second = load_dbc_paths([folder])
    assert all(m.cantools_object is None for m in second.messages)  # from the cache
    assert summary(second) == summary(first)
    # What still needs cantools reads the files again: the same database.
    for a, b in zip(first.cantools_db.messages, second.cantools_db.messages, strict=True):
        assert (a.name, a.frame_id, [s.name for s in a.signals]) == (
            b.name,
            b.frame_id,
            [s.name for s in b.signals],
        )
    assert [choice_names(m) for m in second.messages] == [choice_names(m) for m in first.messages]


def test_a_command_whose_files_are_kept_imports_no_cantools(tmp_path: Path, cache: Path) -> None:
    folder = copy_reference(tmp_path)
    probe = (
        "import sys, json; from candiag.decode.dbc import load_dbc_paths; "
        f"db = load_dbc_paths([{str(folder)!r}]); "
        "print(json.dumps([len(db.messages), 'cantools' in sys.modules, 'can' in sys.modules]))"
    )
    env = {**os.environ, dbc_cache.ENV: str(cache)}
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0][1] is True  # the first run parsed the texts with cantools
    assert runs[1] == [runs[0][0], False, False]


def test_a_changed_file_is_read_again(tmp_path: Path, cache: Path) -> None:
    folder = copy_reference(tmp_path)
    load_dbc_paths([folder])
    target = folder / "contactors.dbc"
    text = target.read_text("cp1252")
    target.write_text(text.replace("ContactorCommand", "ContactorOrder"), "cp1252")
    names = {m.name for m in load_dbc_paths([folder]).messages}
    assert "ContactorOrder" in names and "ContactorCommand" not in names


def test_strictness_is_part_of_the_key(tmp_path: Path, cache: Path) -> None:
    """A file that loads leniently with a warning is refused when strict, kept or not."""
    past = tmp_path / "past.dbc"
    past.write_text(
        'VERSION ""\nBS_:\nBU_: X\nBO_ 100 M: 8 X\n SG_ S : 60|16@1+ (1,0) [0|0] "" X\n'
    )
    for _ in range(2):
        assert load_dbc_paths([past]).warnings
        with pytest.raises(DbcError, match="needs 10 bytes"):
            load_dbc_paths([past], strict=True)


def test_a_file_that_does_not_load_is_not_kept(tmp_path: Path, cache: Path) -> None:
    bad = tmp_path / "bad.dbc"
    bad.write_text('VERSION ""\nBO_ 100 M: 8 X\n SG_ S : this is not a signal\n')
    for _ in range(2):
        with pytest.raises(DbcError):
            load_dbc_paths([bad])
    assert entries(cache) == []


def test_a_damaged_entry_is_read_from_the_text_and_replaced(tmp_path: Path, cache: Path) -> None:
    folder = copy_reference(tmp_path)
    want = summary(load_dbc_paths([folder]))
    for entry in entries(cache):
        entry.write_bytes(b"\x80\x05 not a pickle")
    assert summary(load_dbc_paths([folder])) == want
    assert all(e.read_bytes().startswith(dbc_cache.MAGIC) for e in entries(cache))


def test_a_flipped_byte_anywhere_in_an_entry_reads_the_text(tmp_path: Path, cache: Path) -> None:
    """A damaged entry never crashes a command nor becomes a different database (a review
    flipped bytes: 140 of 400 crashed, 29 loaded a database that differed from the file)."""
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(reference_dbc_dir() / "contactors.dbc", folder)
    want = summary(load_dbc_paths([folder]))
    (entry,) = entries(cache)
    good = entry.read_bytes()
    rng = np.random.default_rng(11)
    for _ in range(60):
        damaged = bytearray(good)
        for at in rng.integers(0, len(good), int(rng.integers(1, 4))).tolist():
            damaged[at] ^= int(rng.integers(1, 256))
        entry.write_bytes(bytes(damaged))
        assert summary(load_dbc_paths([folder])) == want


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_root_with_another_users_home_creates_nothing_there(tmp_path: Path) -> None:
    """``sudo -E candiag ...``: a root-owned ``~/.cache`` in the user's home would lock the
    user's own programs out of it (a review)."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    folder = copy_reference(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in (dbc_cache.ENV, "XDG_CACHE_HOME")}
    subprocess.run(
        [sys.executable, "-c", f"from candiag.decode.dbc import load_dbc_paths; load_dbc_paths([{str(folder)!r}])"],
        env={**env, "HOME": str(home)}, check=True, timeout=60,
    )  # fmt: skip
    assert list(home.iterdir()) == []


def test_a_folder_others_may_write_is_not_used(tmp_path: Path, cache: Path) -> None:
    folder = copy_reference(tmp_path)
    cache.mkdir()
    cache.chmod(0o777)
    load_dbc_paths([folder])
    assert entries(cache) == []
    cache.chmod(0o700)
    load_dbc_paths([folder])
    assert entries(cache)
    cache.chmod(0o777)  # kept entries are not trusted either once others may write there
    assert all(m.cantools_object is not None for m in load_dbc_paths([folder]).messages)


def test_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_reference(tmp_path)
    monkeypatch.setenv(dbc_cache.ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_dbc_paths([folder])
    assert not (tmp_path / "xdg").exists()
    monkeypatch.delenv(dbc_cache.ENV)
    load_dbc_paths([folder])
    assert entries(tmp_path / "xdg" / "candiag")


def test_at_most_max_files_are_kept(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbc_cache, "MAX_FILES", 3)
    folder = copy_reference(tmp_path)
    load_dbc_paths([folder])
    assert len(entries(cache)) == 3
