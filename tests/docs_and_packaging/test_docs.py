"""The rules the code cites are explained in the repo's own ``docs/``.

Theory of operation: comments, docstrings and test names cite behaviour rules
by id (``D-11``, ``D-11 step 9``, ``W-6a``, ``decision 14``, ``decisions 4, 5
and 22``, ``PD-3``) and sections (``docs/behaviour.md section 7``). This test
extracts every citation from the source files with regular expressions over
the whole text (so a citation wrapped across lines still counts) and checks
that each resolves to an entry of ``docs/behaviour.md`` (rules, steps,
sections, the upstream-override decisions) or ``docs/decisions.md`` (the
``PD-n`` decisions taken here). It also checks that nothing in the repo
points at the reference documents outside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCANNED_DIRS = ("meerkat_runtime", "codegen", "spec", "tests", "bench", "scripts")
SCANNED_SUFFIXES = {".py", ".yaml", ".yml", ".j2", ".toml"}

# A rule id: one or two capitals, a dash, a number, an optional letter
# (``W-6a``), not glued to a longer word (``UTF-8``, ``SHA-256`` are no ids),
# optionally followed by ``step N``.
RULE = re.compile(
    r"(?<![\w-])(?P<id>[A-Z]{1,2}-\d+[a-z]?)(?![\w-])"
    r"(?:\s+steps?\s+(?P<step>\d+))?"
)
# ``decision 3``, ``Decisions 1, 19, 20``, ``decisions 3 and 9``,
# ``Decision 15 / 23``, ``Decisions 1/19/20``.
DECISIONS = re.compile(
    r"\b[Dd]ecisions?\s+(?P<numbers>\d+(?:\s*(?:,\s*and|,|/|and)\s*\d+)*)\b"
)
# ``docs/behaviour.md section 7``, ``docs/behaviour.md §9.1``.
SECTION = re.compile(
    r"docs/behaviour\.md,?\s+(?:section|§)\s*(?P<number>\d+(?:\.\d+)?)"
)

ENTRY = re.compile(r"^#{2,5}\s+(?P<id>[A-Z]{1,2}-\d+[a-z]?)\b")
DECISION_ENTRY = re.compile(r"^#{2,5}\s+Decision\s+(?P<number>\d+)\b")
SECTION_ENTRY = re.compile(r"^#{2,3}\s+(?P<number>\d+(?:\.\d+)?)\.?\s")
STEP = re.compile(r"^\s*(?P<number>\d+)\.\s")


@dataclass
class Citations:
    """What one text cites: rule ids (with the steps cited of each),
    upstream-override decisions and sections."""

    rules: dict[str, set[int]] = field(default_factory=dict)
    decisions: set[int] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)

    def add(self, other: Citations, where: str, seen: dict[str, set[str]]) -> None:
        for rule, steps in other.rules.items():
            self.rules.setdefault(rule, set()).update(steps)
            seen.setdefault(rule, set()).add(where)
        self.decisions |= other.decisions
        self.sections |= other.sections
        for number in other.decisions:
            seen.setdefault(f"decision {number}", set()).add(where)


def citations(text: str) -> Citations:
    found = Citations()
    for match in RULE.finditer(text):
        steps = found.rules.setdefault(match["id"], set())
        if match["step"] is not None:
            steps.add(int(match["step"]))
    for match in DECISIONS.finditer(text):
        found.decisions.update(int(n) for n in re.findall(r"\d+", match["numbers"]))
    found.sections.update(m["number"] for m in SECTION.finditer(text))
    return found


@dataclass
class Reference:
    """The entries ``docs/`` defines: rule ids with their numbered steps,
    decision numbers, section numbers."""

    rules: dict[str, set[int]] = field(default_factory=dict)
    decisions: set[int] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)


def reference(paths: list[Path]) -> Reference:
    ref = Reference()
    for path in paths:
        current: set[int] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                current = None
                if (entry := ENTRY.match(line)) is not None:
                    if entry["id"] in ref.rules:
                        ref.duplicates.append(entry["id"])
                    current = ref.rules.setdefault(entry["id"], set())
                elif (decision := DECISION_ENTRY.match(line)) is not None:
                    number = int(decision["number"])
                    if number in ref.decisions:
                        ref.duplicates.append(f"decision {number}")
                    ref.decisions.add(number)
                elif (section := SECTION_ENTRY.match(line)) is not None:
                    ref.sections.add(section["number"])
            elif current is not None and (step := STEP.match(line)) is not None:
                current.add(int(step["number"]))
    return ref


def source_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED_DIRS:
        files += [
            p
            for p in sorted((ROOT / name).rglob("*"))
            if p.suffix in SCANNED_SUFFIXES and p.is_file()
        ]
    return files


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def cited_by(paths: list[Path]) -> tuple[Citations, dict[str, set[str]]]:
    total = Citations()
    seen: dict[str, set[str]] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        total.add(citations(text), str(path.relative_to(ROOT)), seen)
    return total, seen


def unresolved(cited: Citations, ref: Reference) -> list[str]:
    missing: list[str] = []
    for rule, steps in sorted(cited.rules.items()):
        if rule not in ref.rules:
            missing.append(rule)
            continue
        missing += [f"{rule} step {s}" for s in sorted(steps - ref.rules[rule])]
    missing += [f"decision {n}" for n in sorted(cited.decisions - ref.decisions)]
    missing += [f"section {s}" for s in sorted(cited.sections - ref.sections)]
    return missing


# ---------------------------------------------------------------- extraction


def test_extraction_reads_every_form_of_citation() -> None:
    """The forms in use: ids with a step or a letter, decision lists joined by
    commas, ``and`` or slashes, across a line break; no false ids."""
    text = """
    D-11 step 9; W-6a; CP-10 and T-11 steps 2.
    Decisions 1/19/20, decisions 4, 5 and 22, Decision 15 / 23, decision
    14, decisions 3, 23,
    24. UTF-8, SHA-256, X-ray, RFC-3339x and PolicyDecision 7 are none.
    See docs/behaviour.md section 7 and docs/behaviour.md §9.3.
    """
    found = citations(text)
    assert found.rules == {
        "D-11": {9},
        "W-6a": set(),
        "CP-10": set(),
        "T-11": {2},
    }
    assert found.decisions == {1, 3, 4, 5, 14, 15, 19, 20, 22, 23, 24}
    assert found.sections == {"7", "9.3"}


def test_reference_reads_entries_steps_and_sections(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(
        "## 7. Durability\n### 7.1 Accept\n### D-5 Durable before ack\n"
        "1. one\n2. two\n### W-6a Boundary\ntext 3. not a step\n"
        "### Decision 14 Memory follows the store\n1. not D-5's\n",
        encoding="utf-8",
    )
    ref = reference([doc])
    assert ref.rules == {"D-5": {1, 2}, "W-6a": set()}
    assert ref.decisions == {14}
    assert ref.sections == {"7", "7.1"}


def test_the_code_cites_rules_at_all() -> None:
    """Guards against a regex that silently matches nothing."""
    cited, _ = cited_by(source_files())
    assert len(cited.rules) > 100
    assert len(cited.decisions) >= 20
    assert any(cited.rules.get("D-11", set()))


# ---------------------------------------------------------------- resolution


def test_every_rule_the_code_cites_is_explained_in_docs() -> None:
    cited, seen = cited_by(source_files())
    missing = unresolved(cited, reference(doc_files()))
    where = {m: sorted(seen.get(m.split(" step ")[0], ()))[:3] for m in missing}
    assert not missing, f"cited but not in docs/: {where}"


def test_every_rule_the_docs_and_readme_cite_is_explained_in_docs() -> None:
    cited, seen = cited_by([*doc_files(), ROOT / "README.md"])
    missing = unresolved(cited, reference(doc_files()))
    where = {m: sorted(seen.get(m.split(" step ")[0], ()))[:3] for m in missing}
    assert not missing, f"cited but not in docs/: {where}"


def test_docs_define_each_entry_once() -> None:
    assert reference(doc_files()).duplicates == []


def test_port_decisions_are_numbered_in_order() -> None:
    """docs/decisions.md: PD-1 .. PD-n, none skipped, none twice."""
    text = (DOCS / "decisions.md").read_text(encoding="utf-8")
    numbers = [int(n) for n in re.findall(r"^#{2,4}\s+PD-(\d+)\b", text, re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 10


# ---------------------------------------------------------------- no outside docs

OUTSIDE = re.compile(r"BEHAVIOUR\.md|ARCHITECTURE\.md|\.\./shared|/work/shared")


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *doc_files(), *source_files()],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_nothing_points_at_documents_outside_the_repo(path: Path) -> None:
    """The repo explains itself: no file refers to the reference documents
    the port was written from (they are not part of the repo)."""
    if path == Path(__file__).resolve():
        return  # this file names them only to forbid them
    hits = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []


def test_the_diagrams_target_renders_the_docs_pictures() -> None:
    """docs/*.dot are rendered by ``make diagrams`` (never by the tests)."""
    pictures = sorted(DOCS.glob("*.dot"))
    assert {p.name for p in pictures} >= {"layers.dot", "accept-path.dot"}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\ndiagrams:", 1)[1].split("\n\n", 1)[0]
    assert "docs/*.dot" in target
