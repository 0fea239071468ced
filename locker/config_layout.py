"""Where each compartment is on the cabinet: columns, rows and heights.

The kiosk draws the cabinet from it (the door map after a code opens doors, the
maintenance grid), so a shopper told "compartment 37" sees where 37 is. Three
ways to say it, checked strictly (an overlap, a compartment in no cell, a column
that does not exist are errors naming the compartment):

- compact: `[cabinet] columns = ["1-10", "11-20", [21, 22, "23-30"]]`, each
  column its compartments from top to bottom;
- explicit: `[cabinet] columns = 3` and each `[[compartments]]` block's `column`
  and `row` (its first compartment's; a range's others follow below it);
- neither: each board's compartments in number order, in columns of at most
  `DEFAULT_COLUMN_ROWS` rows, the boards side by side in their [[boards]] order.

`rows_tall` (in a `[[compartments]]` block, any form) is how many rows each of its
compartments spans: a large door beside two small ones. Columns and rows count
from 1, row 1 at the top.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from locker.config_reader import ConfigError, Reader

# The keys a [[compartments]] block may carry for the layout, beside its own.
COMPARTMENT_KEYS = ("column", "row", "rows_tall")
DEFAULT_COLUMN_ROWS = 10  # a column of the default layout: about a person's height of doors
MAX_COLUMNS = 64
MAX_ROWS = 64
_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


class Compartment(Protocol):
    """What the layout reads of a declared compartment (`config.CompartmentConfig`)."""

    @property
    def number(self) -> int: ...

    @property
    def board(self) -> str: ...

    @property
    def low(self) -> bool: ...


@dataclass(frozen=True)
class Cell:
    """One compartment's place: its top row, and how many rows its door spans."""

    number: int
    column: int
    row: int
    height: int = 1
    low: bool = False  # an accessible bay, within reach of a wheelchair

    @property
    def rows(self) -> range:
        return range(self.row, self.row + self.height)


@dataclass(frozen=True)
class Layout:
    """The cabinet as a grid of `columns` x `rows`, one cell a compartment."""

    columns: int = 0
    rows: int = 0
    cells: tuple[Cell, ...] = ()

    def cell(self, number: int) -> Cell:
        for c in self.cells:
            if c.number == number:
                return c
        raise KeyError(number)

    def column(self, column: int) -> list[Cell]:
        """The cells of one column, top to bottom."""
        return sorted((c for c in self.cells if c.column == column), key=lambda c: c.row)

    def as_dict(self) -> dict[str, Any]:
        """The local API's `layout` reply."""
        return {
            "columns": self.columns,
            "rows": self.rows,
            "cells": [
                {"number": c.number, "column": c.column, "row": c.row, "height": c.height}
                | ({"low": True} if c.low else {})
                for c in self.cells
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        """The layout from the API's reply (the kiosk's side of `as_dict`)."""
        cells = tuple(
            Cell(
                int(c["number"]),
                int(c["column"]),
                int(c["row"]),
                int(c.get("height", 1)),
                bool(c.get("low", False)),
            )
            for c in data["cells"]
        )
        return cls(int(data["columns"]), int(data["rows"]), cells)


def read_layout(
    path: Path,
    cabinet: object,
    blocks: object,
    compartments: Sequence[Compartment],
    boards: Sequence[str],
) -> Layout:
    """The layout from [cabinet] and the layout keys of the [[compartments]] blocks
    (`blocks`, as written: already checked by config.py), for the `compartments`
    they declared on `boards` (in their [[boards]] order)."""
    r = Reader(path, "[cabinet]", {} if cabinet is None else cabinet)
    r.check_keys(("columns", "rows"))
    low = {c.number: c.low for c in compartments}
    placed = _blocks(path, blocks)
    explicit = [p for p in placed if p.column is not None]
    columns = r.data.get("columns")
    if isinstance(columns, list):
        if explicit:
            raise _fail(
                explicit[0], "column", "give columns in [cabinet] columns or here, not both"
            )
        cells = _compact(r, columns, low, {n: p.tall for p in placed for n in p.numbers})
    elif columns is not None or explicit:
        count = r.get_int("columns", required=True, lo=1, hi=MAX_COLUMNS)
        cells = _explicit(placed, count, low)
    else:
        tall = {n: p.tall for p in placed for n in p.numbers}
        cells = _default(compartments, boards, tall)
    width = max(c.column for c in cells)
    if isinstance(columns, int) and not isinstance(columns, bool):
        width = columns
    height = max(c.row + c.height - 1 for c in cells)
    if r.has("rows"):
        declared = r.get_int("rows", lo=1, hi=MAX_ROWS)
        if height > declared:
            deepest = max(cells, key=lambda c: c.row + c.height)
            raise r.fail(
                "rows",
                f"the cabinet has {declared} rows, but compartment {deepest.number}"
                f" reaches row {deepest.row + deepest.height - 1}",
            )
        height = declared
    _check_overlaps(path, cells)
    return Layout(width, height, tuple(sorted(cells, key=lambda c: c.number)))


@dataclass(frozen=True)
class _Block:
    """One [[compartments]] block's layout keys."""

    reader: Reader
    numbers: tuple[int, ...]
    column: int | None
    row: int | None
    tall: int


def _fail(block: _Block, key: str, problem: str) -> ConfigError:
    return block.reader.fail(key, problem)


def _blocks(path: Path, blocks: object) -> list[_Block]:
    out = []
    for i, raw in enumerate(blocks if isinstance(blocks, list) else [], start=1):
        r = Reader(path, f"[[compartments]] #{i}", raw)
        if r.has("numbers"):
            m = _RANGE.fullmatch(r.get_str("numbers"))
            assert m is not None  # checked where the compartments were read
            numbers = tuple(range(int(m.group(1)), int(m.group(2)) + 1))
        else:
            numbers = (r.get_int("number"),)
        tall = r.get_int("rows_tall", 1, 1, MAX_ROWS)
        column = r.get_int("column", lo=1, hi=MAX_COLUMNS) if r.has("column") else None
        row = r.get_int("row", lo=1, hi=MAX_ROWS) if r.has("row") else None
        if (column is None) != (row is None):
            raise r.fail("row" if row is None else "column", "give both column and row")
        out.append(_Block(r, numbers, column, row, tall))
    return out


def _column_numbers(r: Reader, index: int, entry: object) -> list[int]:
    """One column of the compact form: "1-10", or a list of numbers and ranges."""
    items = entry if isinstance(entry, list) else [entry]
    numbers: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 1:
            numbers.append(item)
            continue
        m = _RANGE.fullmatch(item) if isinstance(item, str) else None
        if m is None or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise r.fail(
                "columns",
                f"column {index}: {item!r} is not a compartment number or a range like"
                ' "1-10" (first <= last)',
            )
        numbers.extend(range(int(m.group(1)), int(m.group(2)) + 1))
    return numbers


def _compact(
    r: Reader, columns: list[object], low: Mapping[int, bool], tall: Mapping[int, int]
) -> list[Cell]:
    if not columns or len(columns) > MAX_COLUMNS:
        raise r.fail("columns", f"expected 1 to {MAX_COLUMNS} columns")
    cells: list[Cell] = []
    where: dict[int, int] = {}
    for index, entry in enumerate(columns, start=1):
        row = 1
        for number in _column_numbers(r, index, entry):
            if number not in low:
                raise r.fail(
                    "columns", f"column {index}: compartment {number} is not in [[compartments]]"
                )
            if number in where:
                raise r.fail(
                    "columns",
                    f"compartment {number} is in column {where[number]} and column {index}",
                )
            where[number] = index
            cells.append(Cell(number, index, row, tall.get(number, 1), low[number]))
            row += tall.get(number, 1)
    missing = sorted(set(low) - set(where))
    if missing:
        raise r.fail("columns", f"compartments in no column: {_numbers(missing)}")
    return cells


def _explicit(placed: list[_Block], count: int, low: Mapping[int, bool]) -> list[Cell]:
    cells: list[Cell] = []
    for block in placed:
        if block.column is None or block.row is None:
            raise _fail(
                block,
                "column",
                f"compartment {block.numbers[0]} is in no cell: give it column and row, as"
                " [cabinet] columns is a count",
            )
        if block.column > count:
            raise _fail(
                block,
                "column",
                f"column {block.column} does not exist: [cabinet] columns = {count}",
            )
        row = block.row
        for number in block.numbers:
            cells.append(Cell(number, block.column, row, block.tall, low[number]))
            row += block.tall
    return cells


def _default(
    compartments: Sequence[Compartment], boards: Sequence[str], tall: Mapping[int, int]
) -> list[Cell]:
    cells: list[Cell] = []
    column = 0
    for board in boards:
        row = DEFAULT_COLUMN_ROWS + 1  # a board starts a column of its own
        for c in sorted((c for c in compartments if c.board == board), key=lambda c: c.number):
            height = tall.get(c.number, 1)
            if row + height - 1 > DEFAULT_COLUMN_ROWS and row > 1:
                column, row = column + 1, 1
            cells.append(Cell(c.number, column, row, height, c.low))
            row += height
    return cells


def _check_overlaps(path: Path, cells: Iterable[Cell]) -> None:
    taken: dict[tuple[int, int], int] = {}
    for c in cells:
        for row in c.rows:
            other = taken.get((c.column, row))
            if other is not None:
                raise ConfigError(
                    f"{path}: [cabinet]: compartments {other} and {c.number} overlap"
                    f" at column {c.column}, row {row}"
                )
            taken[(c.column, row)] = c.number


def _numbers(numbers: list[int]) -> str:
    """1, 2, 3, 7 as "1-3, 7"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
