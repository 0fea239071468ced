"""The design's import rules, over the `ast` import graph of the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The one module of locker/ that wires drivers and the platform link to the domain.
COMPOSITION_ROOT = "locker.daemon"
LIBRARIES = ("serial", "pymodbus", "gpiozero", "paho", "kivy", "pyzbar", "cv2", "picamera2")


def runtime_imports(path: Path) -> set[str]:
    """Modules `path` imports when it runs (not those under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    Visitor().visit(ast.parse(path.read_text(), str(path)))
    return found


def graph(package: str) -> dict[str, set[str]]:
    return {
        f"{package}.{path.stem}": runtime_imports(path)
        for path in (ROOT / package).glob("*.py")
        if path.stem != "__init__"
    }


def test_no_import_cycle_inside_locker() -> None:
    modules = graph("locker")
    edges = {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for dep in edges[module]:
            assert dep not in path, "import cycle: " + " -> ".join([*path, dep])
            if dep not in done:
                visit(dep, [*path, dep])
        done.add(module)

    for module in edges:
        visit(module, [module])


def test_only_the_composition_root_imports_drivers_and_the_platform_link() -> None:
    for module, deps in graph("locker").items():
        outside = sorted(d for d in deps if d.split(".")[0] in ("drivers", "mqtt"))
        if module != COMPOSITION_ROOT:
            assert outside == [], f"{module} imports {outside}"


def test_the_domain_imports_no_hardware_ui_or_mqtt_library() -> None:
    for module, deps in graph("locker").items():
        libraries = sorted(d for d in deps if d.split(".")[0] in LIBRARIES)
        assert libraries == [], f"{module} imports {libraries}"


def test_the_kiosk_talks_to_lockerd_only_through_the_local_api() -> None:
    for module, deps in graph("kiosk_ui").items():
        domain = sorted(d for d in deps if d.split(".")[0] in ("drivers", "mqtt", "simulator"))
        assert domain == [], f"{module} imports {domain}"


def test_lockerctl_reaches_the_locker_only_through_its_local_api() -> None:
    # lockerctl runs as any member of the locker group: what it imports, even indirectly,
    # must not be able to open the database, read the code key or run migrations.
    modules = graph("locker")
    reached, todo = set(), ["locker.ctl"]
    while todo:
        module = todo.pop()
        reached.add(module)
        todo.extend(d for d in modules[module] if d in modules and d not in reached)
    forbidden = {"locker.storage", "locker.codes", "locker.service", "locker.daemon"}
    assert sorted(reached & forbidden) == [], f"locker.ctl reaches {sorted(reached & forbidden)}"
