"""The design's import rules, over the `ast` import graph of the source tree."""

from __future__ import annotations

import ast
import re
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


# A string that reads as an SQL statement: the keyword that opens it, then what must follow.
SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|SELECT\s+\d|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b"
    r"|DELETE\s+FROM\b|REPLACE\s+INTO\b|WITH\s+(RECURSIVE\s+)?\w+.*\bAS\b"
    r"|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b|DROP\s+(TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|ALTER\s+TABLE\b|PRAGMA\s+\w+|BEGIN\b|COMMIT\b|ROLLBACK\b|SAVEPOINT\b|RELEASE\b)",
    re.S,
)
# The domain's statements, the live store's machinery, and the database as a file
# (checked, and stamped with a new epoch, while no lockerd has it open).
SQL_HOMES = {"locker/repo.py", "locker/storage.py", "locker/dbfile.py"}


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string constant or f-string in `path` that opens like SQL."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    # An f-string's literal parts are constants too: the f-string is judged as a whole.
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            text = head.value if isinstance(head, ast.Constant) else ""
        elif isinstance(node, ast.Constant):
            text = node.value
        else:
            continue
        if isinstance(text, str) and SQL.match(text):
            found.append((node.lineno, text))
    return found


def test_the_sql_finder_finds_sql_and_only_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "a = 'SELECT * FROM orders WHERE pk=?'\n"
        "b = f'UPDATE boards SET online={1}'\n"
        "c = ('INSERT OR IGNORE INTO boards (name)'\n ' VALUES (?)')\n"
        "d = 'DELETE FROM codes'\n"
        "e = 'Select the compartment from the list'\n"
        "f = 'Update the firmware first'\n"
        "g = 'Release the port or pins.'\n"
    )
    assert [line for line, _ in sql_strings(sample)] == [1, 2, 3, 5]


def test_no_sql_outside_the_repository_and_the_store() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for package in ("locker", "mqtt")
        for path in sorted((ROOT / package).glob("*.py"))
        if str(path.relative_to(ROOT)) not in SQL_HOMES
        for line, text in sql_strings(path)
    ]
    assert outside == [], "SQL outside " + ", ".join(sorted(SQL_HOMES)) + ":\n" + "\n".join(outside)
