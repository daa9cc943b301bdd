"""The house rule: a module imports its own folder and the floors below it only.

Floors, bottom up (README, "How the code is laid out"): model; config and
version; capture, formats and history; answer and observe; web; app; cli. The test reads every
module's imports with `ast` (module-level and inside functions alike), so a
breach fails here before it blurs who owns what. It also keeps third-party
libraries in the rooms that own them and the import graph free of cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "echo"

FLOORS: dict[str, int] = {
    "model": 0,
    "config": 1, "version": 1,  # settings speak the model's vocabulary (header names are tokens)
    "capture": 2, "formats": 2, "history": 2,
    "answer": 3, "observe": 3,
    "web": 4,
    "app": 5,
    "cli": 6,
    # The test client (echo.client): imports nothing of the server, standard library only
    # (test_client.py checks); below the plugin, which hands it out.
    "client": 6,
    # The pytest plugin (entry point pytest11): like cli, a way in from outside that runs the server.
    "pytest_plugin": 7,
    "__main__": 7, "__init__": 7,  # entry points: `python -m echo`, and create_app loaded on call
}

# Third-party packages and the rooms allowed to import them.
OWNERS: dict[str, frozenset[str]] = {
    "flask": frozenset({"web", "app"}),
    "redis": frozenset({"history"}),
    "sqlite3": frozenset({"history"}),
    "waitress": frozenset({"web", "cli", "pytest_plugin"}),  # the plugin serves from a thread
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The folder (or top-level module) a module of the package lives in."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, but those only for type checking."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []  # annotations only: nothing is imported at run time
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:
                # "from . import x" / "from .. import x": each name may be a module.
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package): path for path in package.rglob("*.py")}


def test_floors_cover_every_room() -> None:
    rooms = {room(name) for name in package_modules() if name != "echo"}
    assert rooms <= set(FLOORS), f"rooms without a floor in this test and the README: {rooms - set(FLOORS)}"


def breaches(package: Path = PACKAGE) -> list[str]:
    modules = package_modules(package)
    found = []
    for name, path in sorted(modules.items()):
        here = room(name) if name != "echo" else "__init__"
        for line, target in imports_of(path, package):
            top = target.split(".")[0]
            if top in OWNERS and here not in OWNERS[top]:
                found.append(f"{path.relative_to(package.parent)}:{line} imports {top}, which only "
                             f"{', '.join(sorted(OWNERS[top]))} may import")
            if top != "echo" or target == "echo":
                continue
            there = room(target)
            if there == here:
                continue
            if FLOORS[there] >= FLOORS[here]:
                found.append(f"{path.relative_to(package.parent)}:{line} imports {target} "
                             f"(floor {FLOORS[there]}) from {here} (floor {FLOORS[here]})")
    return found


def test_imports_run_only_down_the_house() -> None:
    assert breaches() == []


def test_the_check_sees_a_breach(tmp_path: Path) -> None:
    # A model module that reached up into the web floor must be caught.
    fake = tmp_path / "echo"
    (fake / "model").mkdir(parents=True)
    (fake / "web").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "model" / "__init__.py").write_text("")
    (fake / "model" / "bad.py").write_text("from ..web import echo\nimport flask\n")
    (fake / "web" / "__init__.py").write_text("")
    found = breaches(fake)
    assert any("model/bad.py:1 imports echo.web" in b for b in found), found
    assert any("model/bad.py:2 imports flask" in b for b in found), found


def test_no_import_cycles() -> None:
    modules = package_modules()
    graph = {
        name: {target for _, target in imports_of(path) if target in modules and target != name}
        for name, path in modules.items()
    }
    # Module-level imports only would be stricter; any cycle at all is a smell.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # A package's __init__ importing its own submodules to register them is not a cycle of concern.
    real = [c for c in cycles if not any(modules[m].name == "__init__.py" for m in c)]
    assert real == []


def test_every_package_ships_in_the_wheel() -> None:
    # setup.cfg names packages one by one; a new room missing there installs
    # without its modules and fails only at run time.
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"
