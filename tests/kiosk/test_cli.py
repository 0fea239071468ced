"""`locker-kiosk`'s command line: what it refuses, and that it says why in one line (no
window is opened: every case stops before Kivy starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk_ui.app import main


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("size", ["foo", "640x480", "800x", "1024x600x2"])
def test_a_size_the_layout_is_not_made_for_is_refused(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["--size", size], capsys)
    assert line == (
        f"locker-kiosk: error: argument --size: expected 800x480 or 1024x600, not {size!r}"
    )


def test_a_missing_configuration_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    line = refused(["--config", str(missing)], capsys)
    assert line == f"locker-kiosk: {missing}: configuration file not found"


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[kiosk\n", "not valid TOML"),
        (
            '[kiosk]\nsize = "640x480"\n',
            '[kiosk] size: "640x480" is not one of 800x480, 1024x600',
        ),
        ('[kiosk]\nlanguage = "fr"\n', '[kiosk] language: "fr" is not one of zh, en'),
        ('[kiosk]\nprimary_colour = "blue"\n', '[kiosk] primary_colour: "blue" is not a colour'),
        ('[kiosk]\nscanner_side = "top"\n', "[kiosk] scanner_side: "),
        ("[kiosk]\nvolume = 101\n", "[kiosk] volume: must be between 0 and 100"),
        ("[kiosk]\naccessible_timeout_factor = 0.5\n", "[kiosk] accessible_timeout_factor: "),
        ('[kiosk]\nlogo = "missing.png"\n', "missing.png not found"),
        ('[kiosk]\nspeed = "fast"\n', "[kiosk] speed: unknown key"),
        ("[api]\nsocket = 5\n", "[api] socket: expected a path"),
        ('kiosk = "big"\n', "[api] and [kiosk] must be tables"),
    ],
)
def test_an_unusable_configuration_is_said_in_one_line(
    toml: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "locker.toml"
    config.write_text(toml)
    line = refused(["--config", str(config)], capsys)
    assert line.startswith(f"locker-kiosk: {config}: ") and says in line


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: /etc/locker/locker.toml)" in out
    assert "(default: [kiosk] language, else zh)" in out
    assert "(default: [kiosk] size, else 800x480)" in out
    assert "(default: [api] socket)" in out
