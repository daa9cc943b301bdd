"""The container image: its pinned installs, compose.yaml's one build, and the image built for real.

constraints.txt pins every release the image installs; these tests keep it in
step with setup.cfg and pyproject.toml and check the Dockerfile uses it.
compose.yaml builds one image for both replicas. The last test runs
scripts/image-ci: the unchanged Dockerfile built by a real Docker engine, the
container smoke-tested (also read-only), and compose.yaml's two replicas shown
to share one history in Redis. It is skipped where Docker is missing and fails
under CI=true, where .ci/run installs it.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import time

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_container import context_files, read_dockerfile

from support import ROOT, need

CONSTRAINTS = ROOT / "constraints.txt"
COMPOSE = ROOT / "compose.yaml"
IMAGE_CI = ROOT / "scripts" / "image-ci"

# The Pythons an image may be built on, for dependencies behind markers:
# setup.cfg's oldest, Debian bookworm's (the CI stand-in base), and newer ones.
PYTHONS = ("3.10.0", "3.11.2", "3.12.0", "3.13.0")

# scripts/image-ci takes ~1 min with its stand-in bases cached, ~3.5 min without.
IMAGE_CI_SECONDS = 900


def pins() -> dict[str, str]:
    """constraints.txt as canonical name -> exact version; every line must be name==version."""
    out: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(match.group(1))
        assert name not in out, f"constraints.txt pins {name} twice"
        out[name] = match.group(2)
    return out


def install_requires() -> list[Requirement]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    return [Requirement(line) for line in setup["options"]["install_requires"].splitlines() if line.strip()]


def build_requires() -> list[Requirement]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    assert match, "pyproject.toml has no build-system requires"
    return [Requirement(r) for r in re.findall(r'"([^"]+)"', match.group(1))]


def marker_holds(req: Requirement) -> bool:
    """Whether `req` applies on any of PYTHONS (on this platform, with no extras)."""
    if req.marker is None:
        return True
    for python in PYTHONS:
        env = {k: str(v) for k, v in default_environment().items()}
        env.update({"python_full_version": python, "python_version": ".".join(python.split(".")[:2]), "extra": ""})
        if req.marker.evaluate(env):
            return True
    return False


# ---- constraints.txt ------------------------------------------------------------

@pytest.mark.parametrize("requirement", install_requires(), ids=str)
def test_every_install_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    pinned = pins()
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{requirement.name} is in setup.cfg's install_requires but not pinned in constraints.txt"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f"constraints.txt pins {name}=={pinned[name]}, outside setup.cfg's {requirement}")


@pytest.mark.parametrize("requirement", build_requires(), ids=str)
def test_build_backend_is_pinned_within_its_range(requirement: Requirement) -> None:
    pinned = pins()
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{requirement.name} builds the wheel but is not pinned in constraints.txt"
    assert requirement.specifier.contains(pinned[name], prereleases=True)


def test_constraints_pin_the_dependencies_of_the_dependencies() -> None:
    """Walk the installed dependency tree from Echo: every release it reaches is pinned."""
    pinned = pins()
    seen: set[str] = set()
    todo = [Requirement(r) for r in importlib.metadata.requires("echo-server") or []]
    todo = [r for r in todo if marker_holds(r)]
    unpinned = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in pinned:
            unpinned.append(str(req))
        try:
            todo += [r for r in map(Requirement, importlib.metadata.requires(req.name) or []) if marker_holds(r)]
        except importlib.metadata.PackageNotFoundError:
            pass  # needed on another Python only: its name is checked, its own needs are not known here
    assert unpinned == [], "not pinned in constraints.txt (refresh: .venv/bin/python scripts/pin)"
    assert {canonicalize_name(r.name) for r in install_requires()} <= seen


def test_dockerfile_build_stage_installs_with_the_constraints() -> None:
    build = read_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))[0]
    assert "constraints.txt" in context_files(), ".dockerignore must let constraints.txt into the build context"
    copied = [p for args in build.all("COPY") for p in args.split()[:-1]]
    assert "constraints.txt" in copied
    workdir = build.one("WORKDIR").rstrip("/")
    # The variable, not -c, so the isolated environment that builds the wheel is pinned too.
    assert build.env({}).get("PIP_CONSTRAINT") == f"{workdir}/constraints.txt"


# ---- compose.yaml ---------------------------------------------------------------

def compose_services() -> dict[str, str]:
    """compose.yaml's services as name -> their text with `<<: *anchor` merged in (no YAML parser needed)."""
    text = COMPOSE.read_text(encoding="utf-8")
    anchors = {m.group(1): m.group(2) for m in re.finditer(r"^\S+: &(\w+)\n((?:[ #].*\n|\n)+)", text, re.MULTILINE)}
    services_text = text.split("\nservices:\n", 1)[1]
    out = {}
    for m in re.finditer(r"^  ([\w-]+):\n((?:    .*\n|\n)*)", services_text, re.MULTILINE):
        body = m.group(2)
        for anchor in re.findall(r"^    <<: \*(\w+)$", body, re.MULTILINE):
            body += re.sub(r"^  ", "    ", anchors[anchor], flags=re.MULTILINE)
        out[m.group(1)] = body
    return out


def setting(body: str, key: str) -> str | None:
    found = re.findall(rf"^    {key}: *(.*)$", body, re.MULTILINE)
    assert len(found) <= 1, f"{key} set twice"
    return found[0].strip().strip('"') if found else None


def test_compose_builds_one_image_for_both_replicas() -> None:
    services = compose_services()
    replicas = {name: body for name, body in services.items() if name.startswith("echo")}
    assert sorted(replicas) == ["echo-a", "echo-b"]
    builders = [name for name, body in replicas.items() if setting(body, "build") is not None]
    assert builders == ["echo-a"], "exactly one replica builds the image"
    image = setting(replicas["echo-a"], "image")
    assert image, "the build names its image, so the other replica can run it"
    assert setting(replicas["echo-b"], "image") == image
    # Never pulled: a registry image by that name would be a stranger's, not this source.
    assert setting(replicas["echo-a"], "pull_policy") == "build"
    assert setting(replicas["echo-b"], "pull_policy") == "never"


def test_compose_host_ports_are_loopback_only() -> None:
    for name, body in compose_services().items():
        for port in re.findall(r'^      - "?([^"\n]+)"?$', body.split("ports:")[1] if "ports:" in body else "",
                               re.MULTILINE):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


# ---- the image built for real ---------------------------------------------------

def test_image_ci_script_is_strict_bash_and_cleans_up() -> None:
    text = IMAGE_CI.read_text(encoding="utf-8")
    assert os.access(IMAGE_CI, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert re.search(r"^trap cleanup EXIT$", text, re.MULTILINE)
    result = subprocess.run(["bash", "-n", str(IMAGE_CI)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_ci_installs_what_the_image_build_needs() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ")
    apt = next(line for line in run.splitlines() if line.startswith("apt-get install"))
    for package in ("docker.io", "docker-compose", "debootstrap", "curl"):
        assert f" {package}" in apt, f".ci/run does not install {package}"


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_CI_SECONDS + 60)
def test_image_built_and_run_for_real() -> None:
    need("root", os.geteuid() == 0, "", how="run as root: the check starts dockerd and runs debootstrap")
    need("dockerd", shutil.which("dockerd") is not None, "docker.io")
    need("debootstrap", shutil.which("debootstrap") is not None, "debootstrap")
    has_compose = shutil.which("docker-compose") is not None or (shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0)
    need("docker compose", has_compose, "docker-compose")
    need("curl", shutil.which("curl") is not None, "curl")

    started = time.monotonic()
    result = subprocess.run([str(IMAGE_CI)], capture_output=True, text=True, timeout=IMAGE_CI_SECONDS)
    took = time.monotonic() - started
    summary = "\n".join(line for line in result.stdout.splitlines()
                        if line.startswith(("image-ci:", "container-smoke:")))
    assert result.returncode == 0, f"{summary}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert "replica b lists and shows exchange" in summary
    assert summary.count("container-smoke: OK:") == 2, "the smoke test ran twice: plain and read-only"
    assert re.search(r"^container-smoke: starting \S+ --read-only --tmpfs /tmp$", summary, re.MULTILINE)
    print(f"\nscripts/image-ci passed in {took:.0f} s\n{summary}")
