"""The fault campaign, short (`make soak` runs the long one): see simulator/soak.py.

30 SIGKILLs at random moments of random traffic, the broker stopped for 5 s (a minute in
`make soak`), 5 % of board replies dropped and 5 % corrupted, a board unplugged in the
middle of a pickup, the scanner unplugged, and the data medium filled (a tmpfs: only when
the test runs as root, as in CI; said when skipped). After each fault the campaign checks
every promise and raises `Violation` naming the first one broken, with the seed to replay.
"""

from __future__ import annotations

import os
import random
import select
from pathlib import Path

import pytest

from drivers.kerong import CU48_STATUS, ETX, STX, sum8
from drivers.sim import SimBoard
from simulator import soak
from simulator.kerong import KerongSim
from simulator.soak import Options, Violation

SEED = 20261313


@pytest.mark.slow
def test_a_short_fault_campaign_keeps_every_promise(tmp_path: Path) -> None:
    lines: list[str] = []
    opts = Options(
        kills=30,
        seed=SEED,
        broker_outage_s=5.0,
        board_unplugs=2,
        scanner_unplugs=2,
        disk_full="on",
        folder=tmp_path / "soak",
        out=lines.append,
    )
    report = soak.run(opts)
    print("\n".join(lines))
    c = report.counts
    assert lines[0].startswith(f"fault campaign: seed {SEED}")
    assert c["kills"] >= 30
    assert c["broker_outages"] == 1 and c["board_unplugs"] == 2 and c["scanner_unplugs"] == 2
    assert c["dropped"] > 0 and c["corrupted"] > 0
    if os.geteuid() == 0:
        assert c["disk_full"] == 1 and c["disk_full_survived"] == 1
    # The campaign only means something if the traffic went through the faults.
    assert c["deposited"] > 10 and c["picked_up"] > 5 and c["opens"] > 0
    assert c["checks"] == 30 + 2 + 2 + 1 + (1 if os.geteuid() == 0 else 0)


def test_the_stream_check_catches_a_gap_and_a_reused_seq() -> None:
    platform = soak.Platform.__new__(soak.Platform)
    platform.events = {
        f"e{seq}": {"event_id": f"e{seq}", "seq": seq, "type": "fault"} for seq in (1, 2, 4)
    }
    with pytest.raises(Violation, match=r"events lost: seq \[3\]"):
        platform.check_stream(4)
    platform.events["e3"] = {"event_id": "e3", "seq": 3, "type": "fault"}
    assert platform.check_stream(4) == 4
    platform.events["x3"] = {"event_id": "x3", "seq": 3, "type": "fault"}
    with pytest.raises(Violation, match="a seq published under two event ids"):
        platform.check_stream(4)


def test_the_platform_view_only_moves_forward() -> None:
    platform = soak.Platform.__new__(soak.Platform)
    platform.orders = {"A": soak.Order("A")}
    platform._event({"type": "picked_up", "order_id": "A"})
    platform._event({"type": "deposited", "order_id": "A", "pickup_code": "1"})
    assert platform.orders["A"].state == "collected"


def _status_replies(faults_set: dict[str, float], asks: int) -> list[bytes]:
    """Replies a simulated CU48 bus gives to `asks` status requests with the given noise."""
    board = SimBoard("cu48-0", channels=48, door_close_s=0)
    sim = KerongSim("cu48", {0: board}, baud=115200)
    for name, value in faults_set.items():
        setattr(sim.faults, name, value)
    sim.faults.rng = random.Random(SEED)
    port = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
    try:
        body = bytes([STX, 0, 0, CU48_STATUS, ETX])
        replies = []
        for _ in range(asks):
            os.write(port, body + bytes([sum8(body)]))
            ready, _, _ = select.select([port], [], [], 0.3)
            replies.append(os.read(port, 64) if ready else b"")
        return replies
    finally:
        os.close(port)
        sim.close()


def test_line_noise_drops_and_corrupts_replies_by_its_chances() -> None:
    clean = _status_replies({}, 3)
    assert len(set(clean)) == 1 and clean[0]
    assert _status_replies({"drop_p": 1.0}, 2) == [b"", b""]
    corrupted = _status_replies({"corrupt_p": 1.0}, 2)
    assert all(r and r[:-1] == clean[0][:-1] and r[-1] != clean[0][-1] for r in corrupted)
    noisy = _status_replies({"drop_p": 0.3, "corrupt_p": 0.3}, 40)
    assert 0 < noisy.count(b"") < 40 and any(r and r != clean[0] for r in noisy)
