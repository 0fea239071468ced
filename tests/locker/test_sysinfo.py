"""The machine's readings from a tree of real kernel-like files (and from this machine)."""

from __future__ import annotations

from pathlib import Path

from locker.sysinfo import THERMAL_ZONE, THROTTLED_FILES, UPTIME, Power, SysInfo


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_raspberry_pi_reports_temperature_power_and_uptime(tmp_path: Path) -> None:
    write(tmp_path, THERMAL_ZONE, "61234\n")
    write(tmp_path, THROTTLED_FILES[0], "50005\n")  # under-voltage now and since boot
    write(tmp_path, UPTIME, "3600.52 7000.10\n")
    info = SysInfo(tmp_path)
    assert info.cpu_temp_c() == 61.2
    assert info.power() == Power(
        undervoltage=True, throttled=True, undervoltage_since_boot=True, throttled_since_boot=True
    )
    assert info.uptime_s() == 3600.52


def test_a_healthy_supply_reads_all_clear(tmp_path: Path) -> None:
    write(tmp_path, THROTTLED_FILES[1], "0\n")
    assert SysInfo(tmp_path).power() == Power(False, False, False, False)


def test_hardware_without_the_files_omits_the_readings(tmp_path: Path) -> None:
    info = SysInfo(tmp_path)
    assert info.cpu_temp_c() is None
    assert info.power() is None
    assert info.uptime_s() is None


def test_garbage_in_a_kernel_file_is_no_reading_not_a_crash(tmp_path: Path) -> None:
    write(tmp_path, THERMAL_ZONE, "hot\n")
    write(tmp_path, THROTTLED_FILES[0], "zz\n")
    write(tmp_path, UPTIME, "\n")
    info = SysInfo(tmp_path)
    assert (info.cpu_temp_c(), info.power(), info.uptime_s()) == (None, None, None)


def test_disk_free_is_read_from_the_medium_itself(tmp_path: Path) -> None:
    free = SysInfo().disk_free_mb(tmp_path)
    assert free is not None and free >= 0
    assert SysInfo().disk_free_mb(tmp_path / "unplugged-usb-stick") is None
