"""Run psf/requests' own test suite against an `httpbin` fixture and count.

    python tests/requests_suite/run.py                      # against Echo's fixture
    python tests/requests_suite/run.py --check              # ... and compare with expected_failures.txt
    /tmp/phb/bin/python tests/requests_suite/run.py --against pytest-httpbin

The suite is the one in the sdist of a pinned release (`REQUESTS`, checked
against `SDIST_SHA256`), fetched once with `pip download` into a cache folder
(or named by --sdist / $REQUESTS_SDIST), unpacked in a temporary folder and
run by the interpreter given (--python, default this one) with harness.py
loaded: it keeps only the tests that use `httpbin` (none that need TLS), less
deselected.txt, and fails the run if any test tries to leave loopback. The
library under test is the sdist's own `src/`, so the tests and the code match.

The interpreter needs pytest, the library's dependencies (setup.cfg's test
extra has them) and either echo-server (--against echo) or pytest-httpbin
(--against pytest-httpbin). The other plugin, if installed, is turned off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUESTS = "2.32.3"
SDIST = f"requests-{REQUESTS}.tar.gz"
SDIST_SHA256 = "55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760"
# pytest's plugin names: echo-server's entry point, and pytest-httpbin's.
PLUGINS = {"echo": "echo", "pytest-httpbin": "httpbin"}
# What the selection rule picks from this release's suite (all 190 pass against
# pytest-httpbin 2.1.0, one as requests' own xfail); a change means the rule or the release changed.
EXPECTED_SELECTED = 190
PASSING = frozenset({"passed", "xfailed"})  # xfailed: marked so by requests itself


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "echo-server" / "requests-suite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_sdist(given: str | None, python: str) -> Path:
    """The pinned sdist: the one named, or the cached one, else `pip download` it into the cache."""
    if given:
        path = Path(given)
    else:
        path = cache_dir() / SDIST
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                 "--dest", str(path.parent), f"requests=={REQUESTS}"],
                check=True,
            )
    if not path.is_file():
        raise SystemExit(f"run.py: error: {path} is not a file")
    found = sha256(path)
    if found != SDIST_SHA256:
        raise SystemExit(f"run.py: error: {path} has sha256 {found}, not the pinned {SDIST_SHA256}")
    return path


def unpack(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")  # no links or paths out of `into`
        else:  # pragma: no cover - Pythons before the tarfile filters
            archive.extractall(into)  # noqa: S202 - the archive's hash is pinned
    return into / f"requests-{REQUESTS}"


def read_list(path: Path) -> dict[str, str]:
    """`node id  # reason` lines (the same format harness.py reads)."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            node, _, reason = line.partition("#")
            found[node.strip()] = reason.strip()
    return found


def run_suite(python: str, against: str, sdist: Path, extra: list[str]) -> dict[str, Any]:
    """Run the selection; the harness's report (selected ids, outcomes, network attempts) plus the exit code."""
    with tempfile.TemporaryDirectory(prefix="requests-suite-") as work:
        root = unpack(sdist, Path(work))
        report = Path(work) / "report.json"
        others = [arg for key, name in PLUGINS.items() if key != against for arg in ("-p", f"no:{name}")]
        env = {**os.environ, "REQUESTS_SUITE_REPORT": str(report),
               "PYTHONPATH": os.pathsep.join([str(HERE), str(root / "src")]),
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        command = [python, "-m", "pytest", "-p", "harness", "-p", "no:cacheprovider", *others,
                   "-q", "-rfE", "tests", *extra]
        print("$ (cd requests-" + REQUESTS + ") " + " ".join(command), flush=True)
        done = subprocess.run(command, cwd=root, env=env, check=False)
        if not report.is_file():
            raise SystemExit(f"run.py: error: the suite wrote no report (pytest exit {done.returncode})")
        document: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    document["exit_code"] = done.returncode
    document["against"] = against
    return document


def summary(document: dict[str, Any]) -> dict[str, Any]:
    outcomes: dict[str, str] = document["outcomes"]
    counts = Counter(outcomes.values())
    return {
        "against": document["against"],
        "requests": REQUESTS,
        "selected": len(document["selected"]),
        "passed": sum(1 for value in outcomes.values() if value in PASSING),
        "outcomes": dict(sorted(counts.items())),
        "network_attempts": len(document["network_attempts"]),
    }


def check(document: dict[str, Any], expected: dict[str, str]) -> list[str]:
    """What differs from the expected outcome: every selected test passes but those listed, which fail."""
    problems = [f"network guard: {attempt}" for attempt in document["network_attempts"]]
    if len(document["selected"]) != EXPECTED_SELECTED:
        problems.append(f"selected {len(document['selected'])} tests, expected {EXPECTED_SELECTED}")
    outcomes: dict[str, str] = document["outcomes"]
    selected = set(document["selected"])
    for node in sorted(set(expected) - selected):
        problems.append(f"{node}: listed in expected_failures.txt but not selected (remove the line)")
    for node in document["selected"]:
        outcome = outcomes.get(node, "not run")
        if node in expected and outcome in PASSING:
            problems.append(f"{node}: passes now ({expected[node]} has landed?): remove it from "
                            "expected_failures.txt")
        elif node not in expected and outcome not in PASSING:
            problems.append(f"{node}: {outcome}, and it passes against pytest-httpbin")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", choices=sorted(PLUGINS), default="echo")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the test venv")
    parser.add_argument("--sdist", default=os.environ.get("REQUESTS_SDIST"), help=f"path of {SDIST}")
    parser.add_argument("--report", help="write the counts and every outcome here as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the outcomes are those expected_failures.txt describes")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    document = run_suite(args.python, args.against, find_sdist(args.sdist, args.python), args.pytest_args)
    counts = summary(document)
    problems = check(document, read_list(HERE / "expected_failures.txt")) if args.check else []
    if args.report:
        Path(args.report).write_text(json.dumps({**counts, "problems": problems, "detail": document}, indent=1),
                                     encoding="utf-8")
    print(json.dumps(counts))
    for problem in problems:
        print(f"MISMATCH {problem}")
    if document["network_attempts"]:
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
