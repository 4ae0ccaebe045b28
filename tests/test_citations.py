"""The project cites only what it contains.

Code, DBC comments, configs, docs and the kit's READMEs may cite ``docs/...`` files, and those
must exist. They may not point to material outside the repository: the reference notes the
project was started from (``can-bus.md``, ``conventions.md``, ``field-diagnostics.md``,
``charger-internal-protocols.md``, ``modbus-meters.md``) or any folder of the machine it was
written on.  The facts those notes held, with their public sources, are in ``docs/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("candiag", "dbc", "config", "docs", "hil", "systemd", "README.md")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".dbc", ".yml", ".yaml", ".json", ".sh", ".txt", ""}
TEXT_SUFFIXES |= {".service", ".network", ".rules", ".cfg", ".ini", ".j2"}

# The outside notes, by file name: cited bare, or through a path that is not docs/.
OUTSIDE_NOTES = (
    "can-bus",
    "conventions",
    "field-diagnostics",
    "charger-internal-protocols",
    "modbus-meters",
)
NOTE = re.compile(r"(?P<prefix>[\w./-]*?)(?<![\w-])(?P<name>" + "|".join(OUTSIDE_NOTES) + r")\.md")
MACHINE_PATH = re.compile(r"(?:\.\./)+shared\b|shared/reference|/work/|/home/\w+|/root/")
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/(?P<file>[\w.-]+\.md)")
MARKDOWN_LINK = re.compile(r"\]\((?P<file>[\w.-]+\.md)(?:#[^)]*)?\)")
# Other projects' docs cited as public sources, with the project they belong to.
OTHER_PROJECTS_DOCS = {"web-configuration.md": "prometheus/exporter-toolkit"}


def checked_files() -> Iterator[Path]:
    for name in CHECKED:
        top = REPO / name
        if top.is_file():
            yield top
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                if path.suffix in TEXT_SUFFIXES:
                    yield path


def outside_citations(path: Path, text: str) -> list[str]:
    """Each place in ``text`` that points outside the repository, as ``file:line: excerpt``."""
    found = []
    in_docs = path.parent == REPO / "docs"
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path.relative_to(REPO)}:{number}"
        for match in MACHINE_PATH.finditer(line):
            found.append(f"{where}: {match.group(0)!r}")
        for match in NOTE.finditer(line):
            prefix, name = match.group("prefix"), f"{match.group('name')}.md"
            in_repo = (REPO / "docs" / name).is_file()
            if in_repo and (prefix.endswith("docs/") or (in_docs and prefix == "")):
                continue  # the repository's own docs file of that name
            found.append(f"{where}: {prefix}{name!s}")
    return found


def missing_docs(path: Path, text: str) -> list[str]:
    """``docs/x.md`` cited (or ``x.md`` linked from inside docs/) that does not exist."""
    names = {m.group("file") for m in DOCS_PATH.finditer(text)}
    if path.parent == REPO / "docs":
        names |= {m.group("file") for m in MARKDOWN_LINK.finditer(text)}
    names -= OTHER_PROJECTS_DOCS.keys()
    return [
        f"{path.relative_to(REPO)}: docs/{n}"
        for n in sorted(names)
        if not (REPO / "docs" / n).is_file()
    ]


def test_the_checked_tree_is_there() -> None:
    files = list(checked_files())
    assert len(files) > 100  # the walk really reads the package, not an empty folder
    assert REPO / "dbc" / "power_module.dbc" in files


def test_nothing_cites_material_outside_the_repository() -> None:
    found = [
        hit
        for path in checked_files()
        for hit in outside_citations(path, path.read_text(errors="replace"))
    ]
    assert found == [], (
        "cite docs/ instead (put the fact and its public source there):\n" + "\n".join(found)
    )


def test_every_cited_docs_file_exists() -> None:
    found = [
        hit
        for path in checked_files()
        for hit in missing_docs(path, path.read_text(errors="replace"))
    ]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("see can-bus.md §1.4", True),
        ("(conventions.md §2.1)", True),
        ("/work/shared/reference/modbus-meters.md §1.1", True),
        ("../shared/reference/charger-internal-protocols.md section 2", True),
        ("../../shared/notes.txt", True),
        ("technician's order (``field-diagnostics.md``)", True),
        ("reference/field-diagnostics.md", True),
        ("technician's order (docs/field-diagnostics.md)", False),
        ("docs/can-errors.md §1 and docs/protocols.md section 2", False),
    ],
)
def test_the_checks_catch_outside_citations(text: str, flagged: bool) -> None:
    assert bool(outside_citations(REPO / "candiag" / "x.py", text)) is flagged


def test_docs_link_their_siblings_but_code_must_say_docs() -> None:
    assert outside_citations(REPO / "docs" / "x.md", "[f](field-diagnostics.md)") == []
    assert outside_citations(REPO / "candiag" / "x.py", "(field-diagnostics.md)") != []
    assert missing_docs(REPO / "candiag" / "x.py", "see docs/nowhere.md") == [
        "candiag/x.py: docs/nowhere.md"
    ]
