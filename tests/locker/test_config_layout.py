"""The cabinet's layout in the configuration: the compact form, the explicit form, the
default, and every mistake stopping start-up with a message that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from locker.config import ConfigError, load_config
from locker.config_layout import Cell, Layout

HEAD = """
[locker]
id = "l1"
data_dir = "data"

[[boards]]
name = "a"
driver = "sim"

[[boards]]
name = "b"
driver = "sim"
"""

# Two boards of six: four small doors and a large one two rows tall, on each.
BLOCKS = """
[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "a"
size = "S"
low = true

[[compartments]]
number = 5
channel = 5
board = "a"
size = "L"
rows_tall = 2

[[compartments]]
numbers = "6-9"
channels = "1-4"
board = "b"
size = "S"

[[compartments]]
number = 10
channel = 5
board = "b"
size = "L"
rows_tall = 2
"""


def load(tmp_path: Path, text: str) -> Layout:
    path = tmp_path / "locker.toml"
    path.write_text(HEAD + text)
    return load_config(path).layout


def fails(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_compact_form_stacks_each_column_top_to_bottom(tmp_path: Path) -> None:
    layout = load(tmp_path, '[cabinet]\ncolumns = ["1-5", [10, "6-9"]]\n' + BLOCKS)
    assert (layout.columns, layout.rows) == (2, 6)
    assert [(c.number, c.row, c.height) for c in layout.column(1)] == [
        (1, 1, 1),
        (2, 2, 1),
        (3, 3, 1),
        (4, 4, 1),
        (5, 5, 2),
    ]
    assert [(c.number, c.row) for c in layout.column(2)] == [
        (10, 1),
        (6, 3),
        (7, 4),
        (8, 5),
        (9, 6),
    ]
    assert layout.cell(1).low and not layout.cell(6).low


def test_explicit_form_places_each_block(tmp_path: Path) -> None:
    blocks = (
        BLOCKS.replace('size = "S"\nlow = true', 'size = "S"\nlow = true\ncolumn = 1\nrow = 3')
        .replace(
            'size = "L"\nrows_tall = 2\n\n[[compartments]]',
            'size = "L"\nrows_tall = 2\ncolumn = 1\nrow = 1\n\n[[compartments]]',
        )
        .replace('board = "b"\nsize = "S"', 'board = "b"\nsize = "S"\ncolumn = 3\nrow = 1')
        .replace(
            'board = "b"\nsize = "L"\nrows_tall = 2',
            'board = "b"\nsize = "L"\nrows_tall = 2\ncolumn = 3\nrow = 5',
        )
    )
    layout = load(tmp_path, "[cabinet]\ncolumns = 3\nrows = 8\n" + blocks)
    assert (layout.columns, layout.rows) == (3, 8)  # column 2: a screen, no doors
    assert layout.cell(5) == Cell(5, 1, 1, 2, False)
    assert [c.row for c in layout.column(1)] == [1, 3, 4, 5, 6]
    assert layout.cell(10) == Cell(10, 3, 5, 2, False)
    assert layout.column(2) == []


def test_default_is_a_column_per_board_in_number_order(tmp_path: Path) -> None:
    layout = load(tmp_path, BLOCKS)
    assert (layout.columns, layout.rows) == (2, 6)
    assert [c.number for c in layout.column(1)] == [1, 2, 3, 4, 5]
    assert [c.number for c in layout.column(2)] == [6, 7, 8, 9, 10]


def test_default_splits_a_board_into_columns_of_ten_rows(tmp_path: Path) -> None:
    blocks = (
        '[[compartments]]\nnumbers = "1-48"\nchannels = "1-48"\nboard = "a"\nsize = "S"\n'
        '[[compartments]]\nnumbers = "49-96"\nchannels = "1-48"\nboard = "b"\nsize = "S"\n'
    )
    layout = load(tmp_path, blocks)
    assert (layout.columns, layout.rows) == (10, 10)
    assert [c.number for c in layout.column(5)] == [41, 42, 43, 44, 45, 46, 47, 48]
    assert layout.column(6)[0] == Cell(49, 6, 1)  # board b starts a column of its own


def test_layout_round_trips_through_the_api_reply(tmp_path: Path) -> None:
    layout = load(tmp_path, '[cabinet]\ncolumns = ["1-5", "6-10"]\n' + BLOCKS)
    assert Layout.from_dict(layout.as_dict()) == layout


@pytest.mark.parametrize(
    ("cabinet", "message"),
    [
        ('columns = ["1-5", "6-9"]', "compartments in no column: 10"),
        ('columns = ["1-5", "5-10"]', "compartment 5 is in column 1 and column 2"),
        ('columns = ["1-5", "6-11"]', "column 2: compartment 11 is not in [[compartments]]"),
        ('columns = ["1-5", "9-6"]', "column 2: '9-6' is not a compartment number or a range"),
        ('columns = ["1-5", "6-10"]\nrows = 5', "the cabinet has 5 rows, but compartment"),
        ('columns = ["1-10"]\nshelves = 2', "[cabinet] shelves: unknown key"),
        ("columns = []", "expected 1 to 64 columns"),
    ],
)
def test_compact_form_mistakes(tmp_path: Path, cabinet: str, message: str) -> None:
    assert message in fails(tmp_path, "[cabinet]\n" + cabinet + "\n" + BLOCKS)


def explicit(first: str, second: str = "column = 1\nrow = 2") -> str:
    """Compartments 1-2 at `first`, 3 at `second` (a board of three)."""
    return (
        f'[[compartments]]\nnumbers = "1-2"\nchannels = "1-2"\nboard = "a"\nsize = "S"\n{first}\n'
        f'[[compartments]]\nnumber = 3\nchannel = 3\nboard = "a"\nsize = "S"\n{second}\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[cabinet]\ncolumns = 2\n" + explicit("column = 1\nrow = 1"),
            "compartments 2 and 3 overlap at column 1, row 2",
        ),
        (
            "[cabinet]\ncolumns = 2\n" + explicit("column = 1\nrow = 1", "column = 3\nrow = 1"),
            "[[compartments]] #2 column: column 3 does not exist: [cabinet] columns = 2",
        ),
        (
            "[cabinet]\ncolumns = 2\n" + explicit("column = 1\nrow = 1", ""),
            "[[compartments]] #2 column: compartment 3 is in no cell",
        ),
        (explicit("column = 1\nrow = 1", "column = 2"), "#2 row: give both column and row"),
        (explicit("column = 1\nrow = 1", "column = 2\nrow = 1"), "[cabinet] columns: missing"),
        (
            '[cabinet]\ncolumns = ["1-3"]\n' + explicit("column = 1\nrow = 1"),
            "#1 column: give columns in [cabinet] columns or here, not both",
        ),
        (
            "[cabinet]\ncolumns = 2\n" + explicit("column = 1\nrow = 1\nrows_tall = 0"),
            "#1 rows_tall: must be between 1 and 64, got 0",
        ),
    ],
)
def test_explicit_form_mistakes(tmp_path: Path, text: str, message: str) -> None:
    assert message in fails(tmp_path, text)


def test_the_example_configuration_has_its_cabinet() -> None:
    root = Path(__file__).resolve().parents[2]
    layout = load_config(root / "config" / "example.toml").layout
    assert (layout.columns, layout.rows) == (3, 8)
    assert [c.number for c in layout.column(1)] == [3, 4, 5, 6, 7, 8, 1, 2]
    assert layout.cell(2) == Cell(2, 1, 8, 1, low=True)  # the low bays at the bottom
    assert layout.cell(12) == Cell(12, 2, 7, 2)
    assert layout.cell(14) == Cell(14, 3, 5, 4)
