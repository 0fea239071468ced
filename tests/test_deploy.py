"""The installation: the wheel and `deploy/install.sh --root`, built from a clone full of
what a cabinet's clone collects (caches, build output, a QR PNG with a live pickup code)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

from kiosk_ui.app import _settings
from locker.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("locker", "drivers", "mqtt", "simulator", "kiosk_ui")

# Untracked files and caches in the clone; none may reach a wheel or an installation.
STRAYS = {
    "SO-1-pickup-qr.png": b"\x89PNG a pickup code",
    "locker/SO-2-pickup-qr.png": b"\x89PNG a pickup code",
    "locker/stray_untracked.py": b"raise SystemExit('an untracked module was installed')\n",
    "locker/__pycache__/stray_cache.cpython-311.pyc": b"\0",
    "mqtt/schemas/__pycache__/stray_cache.cpython-311.pyc": b"\0",
    "build/lib/locker/stray_old_build.py": b"",
    "pickup_locker.egg-info/stray_SOURCES.txt": b"",
    "var/demo/locker.key": b"00" * 32,
    ".pytest_cache/stray": b"",
}


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone of the project as it is now (tracked files, working-tree content), with the
    strays a cabinet's clone collects."""
    src = tmp_path / "src"
    for name in git(ROOT, "ls-files", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
            (src / name).chmod((ROOT / name).stat().st_mode)
    git(src, "init", "-q")
    git(src, "add", "-A")
    for name, content in STRAYS.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(content)
    return src


def package_data_allowed(name: str) -> bool:
    """The files of the wheel besides modules: the ones pyproject.toml declares."""
    return (
        (name.startswith("mqtt/schemas/") and name.endswith(".json"))
        or name == "mqtt/asyncapi.yaml"
        or (name.startswith("kiosk_ui/translations/") and name.endswith(".json"))
        or (name.startswith("kiosk_ui/sounds/") and name.endswith(".wav"))
    )


def test_pyproject_gives_setuptools_nothing_to_warn_about() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # `project.license` as a table was deprecated
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "LicenseRef-Proprietary"


def test_the_wheel_holds_the_packages_and_their_data_and_nothing_else(
    clone: Path, tmp_path: Path
) -> None:
    # A tracked file deleted in the clone (the last one the build would copy) is left out.
    deleted = [n for n in git(clone, "ls-files").split() if n.startswith(PACKAGES)][-1]
    (clone / deleted).unlink()
    out = subprocess.run(
        [str(clone / "deploy" / "build-wheel.sh"), str(tmp_path / "dist")],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wheel = Path(out.stdout.strip())
    assert wheel.parent == tmp_path / "dist" and wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    ours = [n for n in names if ".dist-info/" not in n]
    assert all(n.split("/")[0] in PACKAGES for n in ours), sorted(ours)
    assert [n for n in ours if not n.endswith(".py") and not package_data_allowed(n)] == []
    assert [n for n in names if "stray" in n or "__pycache__" in n] == []
    # Every tracked module and data file of the packages is in it.
    tracked = {n for n in git(ROOT, "ls-files", *PACKAGES).split() if (ROOT / n).is_file()}
    tracked.discard(deleted)
    assert {n for n in tracked if n.endswith(".py") or package_data_allowed(n)} == set(ours)


@pytest.mark.slow
def test_install_puts_the_package_in_place_never_the_clone(clone: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    old_copy = root / "opt" / "locker" / "src"  # what earlier installers left
    old_copy.mkdir(parents=True)
    (old_copy / "SO-0-pickup-qr.png").write_bytes(b"\x89PNG")

    def install() -> str:
        run = subprocess.run(
            [str(clone / "deploy" / "install.sh"), "--root", str(root)],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    first = install()
    assert f"removed {old_copy}" in first
    assert "system packages (" in first and "left alone" in first
    assert not old_copy.exists()
    files = [p for p in root.rglob("*") if p.is_file()]
    for stray in ("pickup-qr.png", "stray", "locker.key"):
        assert [p for p in files if stray in p.name] == [], stray
    site = next((root / "opt" / "locker" / ".venv" / "lib").glob("python3*/site-packages"))
    for package in PACKAGES:
        for p in (site / package).rglob("*"):
            name = p.relative_to(site).as_posix()
            assert p.is_dir() or name.endswith((".py", ".pyc")) or package_data_allowed(name)
    assert not (site / "tests").exists() and not (site / "build").exists()
    config = load_config(root / "etc" / "locker" / "locker.toml")
    assert config.locker.data_dir == Path("/var/lib/locker")
    assert config.api.socket == "/run/locker/api.sock"
    units = root / "etc" / "systemd" / "system"
    assert sorted(p.name for p in units.iterdir()) == [
        "locker-kiosk.service",
        "locker-standby.service",
        "lockerd.service",
    ]
    # the kiosk's own settings, readable by all: it never needs lockerd's configuration
    kiosk = root / "etc" / "locker-kiosk" / "kiosk.toml"
    assert kiosk.stat().st_mode & 0o777 == 0o644
    assert _settings(str(kiosk)) == {
        "socket": "/run/locker/api.sock",
        "language": "zh",
        "size": "800x480",
    }
    assert tomllib.loads(kiosk.read_text()).keys() == {"api", "kiosk"}
    lockerctl = root / "opt" / "locker" / ".venv" / "bin" / "lockerctl"
    help_text = subprocess.run(
        [str(lockerctl), "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "set-pin" in help_text.stdout

    # An upgrade with a fix but the same version number installs the fix, and keeps the
    # configuration as the technician edited it.
    (root / "etc" / "locker" / "locker.toml").write_text(
        config.path.read_text().replace('id = "store-001-a"', 'id = "store-042-b"')
    )
    ctl = clone / "locker" / "ctl.py"
    ctl.write_text(ctl.read_text() + "\nUPGRADE_MARK = 1\n")
    second = install()
    assert "kept" in second
    assert "UPGRADE_MARK = 1" in (site / "locker" / "ctl.py").read_text()
    assert load_config(root / "etc" / "locker" / "locker.toml").locker.id == "store-042-b"


def _unit_as_installed(name: str, folder: Path) -> Path:
    """The unit with its program replaced by one that exists here: verify checks it."""
    text = (ROOT / "systemd" / name).read_text()
    unit = folder / name
    unit.write_text(re.sub(r"/opt/locker/\.venv/bin/[a-z-]+", "/bin/true", text))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", ["lockerd.service", "locker-kiosk.service"])
def test_units_verify_clean_and_are_confined(name: str, tmp_path: Path) -> None:
    unit = _unit_as_installed(name, tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in security.stderr:
        pytest.skip("this systemd-analyze has no offline security check")
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", security.stdout)
    assert level is not None, security.stdout + security.stderr
    assert float(level.group(1)) <= 2.0 and level.group(2) == "OK", security.stdout


def test_the_kiosk_unit_keeps_lockerds_configuration_out_of_reach() -> None:
    unit = (ROOT / "systemd" / "locker-kiosk.service").read_text()
    assert "--config /etc/locker-kiosk/kiosk.toml" in unit and "/etc/locker/" not in unit
    assert "InaccessiblePaths=-/etc/locker -/var/lib/locker" in unit.splitlines()


@pytest.mark.slow
def test_a_cabinet_without_a_screen_runs_from_the_package_alone(
    clone: Path, tmp_path: Path
) -> None:
    """`install.sh --no-kiosk`: the wheel with no extras in a fresh venv; lockerd starts on
    the simulator, lockerctl reads it, and an order goes from reservation to pickup."""
    root = tmp_path / "root"
    run = subprocess.run(
        [str(clone / "deploy" / "install.sh"), "--root", str(root), "--no-kiosk"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no kiosk (--no-kiosk)" in run.stdout
    units = root / "etc" / "systemd" / "system"
    assert sorted(p.name for p in units.iterdir()) == ["locker-standby.service", "lockerd.service"]
    assert not (root / "etc" / "locker-kiosk").exists()
    venv = root / "opt" / "locker" / ".venv" / "bin"
    no_kivy = subprocess.run(
        [venv / "python", "-c", "import kivy"], capture_output=True, check=False
    )
    assert no_kivy.returncode != 0  # the screen's toolkit is not on a headless cabinet

    work = tmp_path / "work"
    work.mkdir()
    config = work / "locker.toml"
    config.write_text(
        '[locker]\nid = "headless-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    lockerd = subprocess.Popen(
        [venv / "lockerd", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        status = ""
        for _ in range(200):
            status = subprocess.run(
                [venv / "lockerctl", "--config", str(config), "status"],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            ).stdout
            if " is running" in status:
                break
        assert "lockerd" in status and " is running" in status, status
    finally:
        lockerd.terminate()
        assert lockerd.wait(timeout=30) == 0
        assert lockerd.stderr is not None
        log = lockerd.stderr.read()
    assert "started" in log and "Traceback" not in log
    example = work / "example.toml"
    example.write_text(
        (ROOT / "config" / "example.toml").read_text().replace('"./var/demo', '"./state')
    )
    demo = subprocess.run(
        [venv / "locker-sim", "demo", "--config", str(example)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "event/picked_up" in demo.stdout
