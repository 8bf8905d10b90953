"""The documentation agrees with itself and with the code: every file it names exists, the
systemd unit's memory-lock limit is the one the docs quote, and every promise about when
a template is deleted carries invariant 2's bound (retention + one sweep period)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# Documents a reader follows (CHANGELOG.md is history: it may name files since removed),
# and the source trees whose comments point into them.
_DOCS = ("README.md", "docs/*.md", "models/README.md", "hw/README.md",
         "src/dispenser/data/README.md", "config/dispenser.example.toml")
_CODE = ("src/**/*.py", "firmware_sim/**/*.py", "tests/**/*.py", "bench/**/*.py",
         "models/*.py", "hw/**/*.py", "hw/*.sh", "hw/*.service")
# Files the program writes or a reader creates: named in the docs, never in the repository.
_OUTPUTS = {"audit-report.md", "audit-report.json", "audit-report.html", "report.json",
            "report.html", "status.json", "bench-pi.json", "my.toml", "my-toilet.toml",
            "my-pairs.toml", "my-similarity.toml", "timeline.png", "sweep.png", "tradeoff.png",
            "similarity.png"}
# Where the unit file's paths live in this repository.
_INSTALLED_SOURCE = "/opt/dispenser/src/"

_FILE_NAME = re.compile(
    r"(?<![\w/.-])(/?(?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:md|py|toml|sh|service|rules|npz"
    r"|onnx|png|json|html))(?![\w/-])")
_MD_NAME = re.compile(r"(?<![\w/.-])(/?(?:[\w.-]+/)*[\w-]+\.md)(?![\w/-])")


def _files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})


def _missing(root: Path, doc: Path, name: str, basenames: set[str]) -> bool:
    if name.startswith(_INSTALLED_SOURCE):
        name = name[len(_INSTALLED_SOURCE):]
    elif name.startswith("/"):
        return False  # a path on the board (/etc/dispenser/dispenser.toml), not in the repo
    if "/" not in name:
        return name not in basenames and name not in _OUTPUTS
    return not ((root / name).exists() or (doc.parent / name).exists()
                or (root / "src" / name).exists())


def _repo_basenames(root: Path) -> set[str]:
    """Names of the files in the checkout (hidden folders and virtual environments skipped)."""
    names: set[str] = set()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders
                         if not d.startswith(".") and not (Path(folder) / d / "pyvenv.cfg")
                         .exists()]
        names.update(files)
    return names


def test_every_file_the_docs_and_comments_name_exists(repo_root: Path) -> None:
    basenames = _repo_basenames(repo_root)
    me = Path(__file__).resolve()
    missing = [f"{doc.relative_to(repo_root)}: {m.group(1)}"
               for patterns, pattern in ((_DOCS, _FILE_NAME), (_CODE, _MD_NAME))
               for doc in _files(repo_root, patterns) if doc.resolve() != me
               for m in pattern.finditer(doc.read_text(encoding="utf-8"))
               if _missing(repo_root, doc, m.group(1), basenames)]
    assert missing == []


@pytest.mark.parametrize("name", ["CONTRACTS.md", "DESIGN.md", "docs/nothing.md"])
def test_the_reference_check_catches_a_missing_file(repo_root: Path, name: str) -> None:
    basenames = {"README.md", "privacy.md"}
    assert _missing(repo_root, repo_root / "README.md", name, basenames)


def test_the_memory_lock_limit_in_the_docs_is_the_units(repo_root: Path) -> None:
    unit = re.findall(r"^LimitMEMLOCK=(\w+)$",
                      (repo_root / "hw" / "dispenser.service").read_text(encoding="utf-8"),
                      re.MULTILINE)
    assert len(unit) == 1
    quoted = {f"{doc.relative_to(repo_root)}: {value}"
              for doc in _files(repo_root, _DOCS)
              for value in re.findall(r"LimitMEMLOCK=(\w+)", doc.read_text(encoding="utf-8"))}
    assert quoted, "no document quotes the unit's LimitMEMLOCK"
    assert {q for q in quoted if not q.endswith(f": {unit[0]}")} == set()


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n(?=\s*[-*] )", text)]


def test_every_deletion_promise_carries_the_sweep_bound(repo_root: Path) -> None:
    """Invariant 2: a template is zeroised no later than retention + sweep_period, so a
    sentence saying it is deleted 'at the retention limit' must say by the sweep."""
    promise = re.compile(r"(overwritten|deleted|zeroised)\W+(\w+\W+){0,6}at the retention "
                         r"limit|at the retention limit\W+(\w+\W+){0,3}(overwritten|deleted)",
                         re.IGNORECASE)
    unbounded = [f"{doc.relative_to(repo_root)}: {p[:100]}"
                 for doc in _files(repo_root, _DOCS)
                 for p in _paragraphs(doc.read_text(encoding="utf-8"))
                 if promise.search(p) and "sweep" not in p.lower()]
    assert unbounded == []


def test_deploy_md_does_not_call_the_unprivileged_memory_scan_broken(repo_root: Path) -> None:
    """Section 5 once said the /proc/self/mem scans fail as a non-root user while they pass
    (tests/privacy/test_memscan.py runs one as 'nobody'); the old failure is history, in
    CHANGELOG.md."""
    text = (repo_root / "docs" / "deploy.md").read_text(encoding="utf-8")
    claims = [p for p in _paragraphs(text)
              if "/proc/self/mem" in p and re.search(r"\bfail", p)]
    assert claims == []


def test_every_quoted_config_error_is_the_one_the_loader_prints(repo_root: Path) -> None:
    """README quoted `store.retention_s = 900 is out of range`; the loader says 900.0."""
    from dispenser.config import settings_from_mapping
    from dispenser.errors import ConfigError

    quoted = re.compile(r"config: (\w+)\.(\w+) = (\S+)\s+is out of range\s+\(allowed [^)]*\)")
    texts = [p.read_text(encoding="utf-8")
             for p in (*_files(repo_root, _DOCS), repo_root / "src/dispenser/config.py")]
    seen = 0
    for text in texts:
        for m in quoted.finditer(text):
            section, key, value = m.groups()
            with pytest.raises(ConfigError) as error:
                settings_from_mapping({section: {key: float(value)}})
            assert " ".join(m.group(0).split()) == str(error.value)
            seen += 1
    assert seen >= 2


# What a run log says and a user document must not: the history goes to CHANGELOG.md.
_SESSION_HISTORY = re.compile(
    r"\bissues? \d+\b|\b(this|that|the same|during the|all) session\b|earlier (the same "
    r"day|today|runs?)\b|\bcommits? [0-9a-f]{7,40}\b|\((?:[0-9a-f]{7,12}(?:, )?)+\)"
    r"|\bbefore the fix\b|\bon the old code\b", re.IGNORECASE)


def test_user_docs_carry_no_session_history(repo_root: Path) -> None:
    """README, docs/ and the source's docstrings say what is true now; issue numbers, commit
    hashes and "earlier this session" belong in CHANGELOG.md and git."""
    docs = _files(repo_root, (*_DOCS, "src/**/*.py"))
    found = [f"{doc.relative_to(repo_root)}: {m.group(0)!r}" for doc in docs
             for m in _SESSION_HISTORY.finditer(doc.read_text(encoding="utf-8"))]
    assert found == []


@pytest.mark.parametrize("line", [
    "Fixed (2b2fe10), with a test", "commits 39bd855 and d050691", "(issue 3)",
    "never idle during this session", "Earlier the same day", "fails on the old code",
    "the ncnn tracker's issue #3485 is a link, not history"])
def test_the_session_history_pattern_catches_run_log_phrases(line: str) -> None:
    assert bool(_SESSION_HISTORY.search(line)) == ("#3485" not in line)
