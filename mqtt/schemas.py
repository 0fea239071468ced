"""The JSON Schemas of contract v1 (`mqtt/schemas/*.json`), loaded once, used both ways.

Every incoming command is checked against its schema before it reaches the
service (the reply names the offending field), and the tests check that
every payload the locker sends validates against the schema of its topic.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of one schema file, by its name without `.json`."""
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "payload"


def problems(name: str, payload: Any) -> list[str]:
    """Every way `payload` breaks schema `name`, each naming the field."""
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: list(e.path))
    return [f"{_where(e.path)}: {e.message}"[:200] for e in errors]


@cache
def _commands_with_schemas() -> frozenset[str]:
    return frozenset(p.stem.removeprefix("cmd-") for p in SCHEMA_DIR.glob("cmd-*.json"))


def command_problem(command: str, payload: Any) -> str | None:
    """The first problem of a command against its schema, or None (unknown commands pass)."""
    if command not in _commands_with_schemas():
        return None
    found = problems(f"cmd-{command}", payload)
    return found[0] if found else None
