"""Wrong codes at every terminal, as an attacker sends them: through the real devices
(the keypad over the local API, the serial scanner on a pty, the camera's folder of
frames) and through the API's own fields (the terminal a request names, the staff flag,
many connections, reconnecting, QR and digits mixed, another locker's QR).

Counts only: codes answered, wrong codes evaluated (each has its audit row, a throttled
one has none), unlocks on the simulated board, `code_attempts_throttled` events. The
allowance an attack is held to is worked out from the throttle's own policy and the time
the attack took, never from how fast this machine is.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, reserve_on_loop, wait_for
from test_api import Client

from drivers.sim import SimBoard
from locker.clock import FakeClock
from locker.codes import qr_text
from locker.events import CodeEntered
from locker.throttle import ThrottlePolicy, ThrottleState, record_failure, wait_s
from simulator.console import Cabinet

LOCKER = "abuse-codes"
FREE = 5  # [security] free_attempts, the default
BASE_S = 30.0  # [security] throttle_base_s, the default
PER_DAY = 200  # [security] wrong_codes_per_day, the default
BUDGET_WAIT_S = 900.0  # [security] budget_wait_s, the default
DAY = 86400.0


# -- the cabinet: lockerd's build and loop on the simulated devices ------------------------


@contextmanager
def cabinet(tmp_path: Path, *, scanner: bool = False, camera: bool = False) -> Iterator[Any]:
    """A CU48 board and the scanner or the camera on ptys and folders, as `locker-sim boards`
    makes them, driven by lockerd's own build() and loop (the real drivers)."""
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=scanner, camera=camera, locker_id=LOCKER)
    running = RunningDaemon(cab.config_path)
    try:
        yield cab, running
    finally:
        running.stop()
        cab.close()


def unlocks(cab: Cabinet) -> list[int]:
    """Every channel the board was told to unlock, in order."""
    return [channel for sim in cab.sims.values() for _, channel in sim.unlocks]


def events(running: RunningDaemon, type_: str) -> list[dict[str, Any]]:
    stored = running.call(lambda: running.locker.store.events(limit=1_000_000))
    return [e.fields for e in stored if e.type == type_]


def evaluated(running: RunningDaemon, terminal: str) -> int:
    """Wrong codes the locker looked up at this terminal (a throttled one is not)."""
    rows = running.call(lambda: running.locker.store.audit_entries(1_000_000, ("wrong_code",)))
    return sum(1 for r in rows if r.actor == terminal)


def terminal_allowance(seconds: float) -> int:
    """Wrong codes one terminal's throttle evaluates at most in `seconds` of trying: the
    free ones, the one that starts the first wait, then one per wait (each >= BASE_S)."""
    return FREE + 1 + math.ceil(seconds / BASE_S)


def door(running: RunningDaemon, number: int) -> str:
    snapshot = running.call(running.locker.service.snapshot)
    [c] = [c for c in snapshot["compartments"] if c["number"] == number]
    return str(c["door"])


def load_order(running: RunningDaemon, cab: Cabinet, order_id: str) -> tuple[int, str]:
    """The platform reserves, staff load the order at the staff screen (their own
    terminal); returns the compartment and the shopper's pickup code."""
    deposit = reserve_on_loop(running.locker, order_id)
    staff = Client(running.locker.config.api.socket)
    try:
        result = staff.ask(id=1, op="code", text=deposit, staff=True)["result"]
    finally:
        staff.close()
    assert result["outcome"] == "opened", result
    [number] = result["compartments"]
    wait_for(lambda: door(running, number) == "open", "the loaded door seen open")
    cab.run(f"close {number}")
    wait_for(
        lambda: any(e["order_id"] == order_id for e in events(running, "deposited")),
        "the order deposited",
    )
    [loaded] = [e for e in events(running, "deposited") if e["order_id"] == order_id]
    return number, str(loaded["pickup_code"])


def wrong_inputs(count: int, real: str) -> Iterator[str]:
    """What a guesser sends: digits of both code lengths, this locker's QR texts of both
    kinds, another locker's QR, and the customer's real code under the wrong kind."""
    for i in range(count):
        digits = f"{(i * 7919 + 12_345_678) % 100_000_000:08d}"
        if digits == real:
            digits = f"{(int(real) + 1) % 100_000_000:08d}"
        yield [
            digits,
            qr_text(LOCKER, "pickup", digits),
            f"{i:010d}",
            qr_text(LOCKER, "deposit", f"{i:010d}"),
            qr_text("store-999-z", "pickup", real),  # another locker's QR with a live code
            qr_text(LOCKER, "deposit", real),  # the real code under the wrong kind
        ][i % 6]


def count_entries(running: RunningDaemon, method: str) -> list[str]:
    """The outcome of every code the scanner or the camera handed in, as the kiosk's
    stream hears of it (the hub's topic, on the loop)."""
    seen: list[str] = []

    def heard(entered: CodeEntered) -> None:
        if entered.method.value == method:
            seen.append(entered.result.outcome)

    running.call(lambda: running.locker.service.hub.code_entered.subscribe(heard))
    return seen


# -- through the terminals -----------------------------------------------------------------


def test_ten_thousand_wrong_scans_open_nothing_and_the_keypad_still_serves_a_customer(
    tmp_path: Path,
) -> None:
    with cabinet(tmp_path, scanner=True) as (cab, running):
        number, pickup = load_order(running, cab, "SO-1")
        before = unlocks(cab)
        seen = count_entries(running, "scanner")
        assert cab.scanner is not None
        started, sent = time.monotonic(), 0
        inputs = list(wrong_inputs(10_000, pickup))
        for batch in range(0, len(inputs), 500):  # the pty's buffer paces the writes
            for text in inputs[batch : batch + 500]:
                cab.scanner.scan(text)
                sent += 1
            wait_for(lambda n=sent: len(seen) >= n, f"{sent} scans answered", timeout=60)
        took = time.monotonic() - started
        assert len(seen) == 10_000
        assert set(seen) <= {"wrong", "throttled"}
        # The free ones say "wrong"; each evaluated after them starts a wait ("throttled").
        assert seen.count("wrong") == FREE
        assert FREE + 1 <= evaluated(running, "scanner") <= terminal_allowance(took)
        assert unlocks(cab) == before  # not one unlock
        alarms = events(running, "code_attempts_throttled")
        assert [a["terminal"] for a in alarms] == ["scanner"]
        assert alarms[0]["failures"] == FREE + 1
        # The guesser kept the scanner closed, not the order: the customer types it.
        customer = Client(running.locker.config.api.socket)
        try:
            result = customer.ask(id=1, op="code", text=pickup)["result"]
        finally:
            customer.close()
        assert (result["outcome"], result["compartments"]) == ("opened", [number])
        wait_for(lambda: unlocks(cab) == [*before, number], "the customer's door unlocked")


def _flood_keypad(path: str, inputs: list[str]) -> list[dict[str, Any]]:
    """The keypad over the API: half on one connection that reconnects every 50 codes,
    half over eight connections at once."""
    results: list[dict[str, Any]] = []
    half = len(inputs) // 2
    c = Client(path)
    try:
        for i, text in enumerate(inputs[:half]):
            if i and i % 50 == 0:
                c.close()
                c = Client(path)
            results.append(c.ask(id=i, op="code", text=text)["result"])
    finally:
        c.close()
    shares = [inputs[half + k :: 8] for k in range(8)]
    lock = threading.Lock()

    def send(share: list[str]) -> None:
        mine = Client(path)
        try:
            got = [mine.ask(id=i, op="code", text=t)["result"] for i, t in enumerate(share)]
        finally:
            mine.close()
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_ten_thousand_wrong_codes_at_the_keypad_open_nothing_and_the_camera_still_serves(
    tmp_path: Path,
) -> None:
    with cabinet(tmp_path, camera=True) as (cab, running):
        number, pickup = load_order(running, cab, "SO-1")
        before = unlocks(cab)
        started = time.monotonic()
        path = running.locker.config.api.socket
        results = _flood_keypad(path, list(wrong_inputs(10_000, pickup)))
        took = time.monotonic() - started
        outcomes = [r["outcome"] for r in results]
        assert len(outcomes) == 10_000 and set(outcomes) <= {"wrong", "throttled"}
        assert outcomes.count("wrong") == FREE
        assert FREE + 1 <= evaluated(running, "keypad") <= terminal_allowance(took)
        assert unlocks(cab) == before
        assert [a["terminal"] for a in events(running, "code_attempts_throttled")] == ["keypad"]
        # The keypad waits for whoever types; the customer's QR held to the camera opens.
        seen = count_entries(running, "camera")
        cab.run(f"show {qr_text(LOCKER, 'pickup', pickup)}")
        wait_for(lambda: len(seen) == 1, "the customer's QR read by the camera")
        assert seen == ["opened"]
        wait_for(lambda: unlocks(cab) == [*before, number], "the customer's door unlocked")


def test_wrong_qr_codes_held_to_the_camera_open_nothing_and_the_keypad_still_serves(
    tmp_path: Path,
) -> None:
    # Each frame is a PNG the camera's thread decodes: 300 distinct codes, not 10,000.
    with cabinet(tmp_path, camera=True) as (cab, running):
        number, pickup = load_order(running, cab, "SO-1")
        before = unlocks(cab)
        seen = count_entries(running, "camera")
        started = time.monotonic()
        # A code still in front of the lens is read once: every frame a different QR.
        frames = [
            [
                qr_text(LOCKER, "pickup", f"{(i * 7919 + 12_345_678) % 100_000_000:08d}"),
                qr_text(LOCKER, "deposit", f"{i:010d}"),
                qr_text(f"store-{i:03d}-z", "pickup", pickup),  # another locker's QR
            ][i % 3]
            for i in range(299)
        ]
        frames.append(qr_text(LOCKER, "deposit", pickup))  # the real code, the wrong kind
        assert pickup not in {f.rsplit(":", 1)[1] for f in frames[:299:3]}
        for i, text in enumerate(frames):
            cab.run(f"show {text}")
            if i % 50 == 49:
                wait_for(lambda n=i + 1: len(seen) >= n, f"{i + 1} frames read", timeout=60)
        wait_for(lambda: len(seen) >= 300, "every frame read", timeout=60)
        took = time.monotonic() - started
        assert len(seen) == 300 and set(seen) <= {"wrong", "throttled"}
        assert FREE + 1 <= evaluated(running, "camera") <= terminal_allowance(took)
        assert unlocks(cab) == before
        assert [a["terminal"] for a in events(running, "code_attempts_throttled")] == ["camera"]
        customer = Client(running.locker.config.api.socket)
        try:
            result = customer.ask(id=1, op="code", text=pickup)["result"]
        finally:
            customer.close()
        assert (result["outcome"], result["compartments"]) == ("opened", [number])


# -- around the throttle: what a rogue client of the local API can try ---------------------


@pytest.fixture
def faked(tmp_path: Path) -> Iterator[tuple[RunningDaemon, FakeClock, SimBoard]]:
    """lockerd's build and loop on a simulated board, on a clock the test moves."""
    (tmp_path / "locker.toml").write_text(
        f'[locker]\nid = "{LOCKER}"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    clock, board = FakeClock(), SimBoard("b0", 8, door_close_s=0)
    running = RunningDaemon(tmp_path / "locker.toml", {"b0": board}, clock)
    yield running, clock, board
    running.stop()


def _ask_code(c: Client, text: str, **fields: Any) -> dict[str, Any]:
    reply = c.ask(id=1, op="code", text=text, **fields)
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def allowed(times: list[float], policy: ThrottlePolicy) -> int:
    """Wrong codes one terminal evaluates when tried at these times (nothing but wrong codes
    in between)."""
    state, count = ThrottleState(), 0
    for t in times:
        if wait_s(state, t) > 0:
            continue
        state, _ = record_failure(state, t, policy)
        count += 1
    return count


def test_many_connections_at_once_and_reconnecting_share_one_terminals_throttle(
    faked: tuple[RunningDaemon, FakeClock, SimBoard],
) -> None:
    running, _, board = faked
    path = running.locker.config.api.socket
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess(k: int) -> None:
        c = Client(path)
        try:
            got = [_ask_code(c, f"{k:04d}{i:04d}")["outcome"] for i in range(20)]
        finally:
            c.close()
        with lock:
            outcomes.extend(got)

    threads = [threading.Thread(target=guess, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(100):  # a new connection for every code
        c = Client(path)
        try:
            outcomes.append(_ask_code(c, f"7777{i:04d}")["outcome"])
        finally:
            c.close()
    assert len(outcomes) == 900
    # The requests run one at a time on the loop: no race lets a sixth free code through.
    assert outcomes.count("wrong") == FREE and evaluated(running, "keypad") == FREE + 1
    assert outcomes.count("throttled") == 900 - FREE
    assert board.unlocks == []


def test_qr_and_digits_other_lockers_and_junk_in_between_count_on_one_terminal(
    faked: tuple[RunningDaemon, FakeClock, SimBoard],
) -> None:
    running, _, _ = faked
    c = Client(running.locker.config.api.socket)
    try:
        inputs = [
            "12345678",
            qr_text(LOCKER, "pickup", "12345679"),
            "not a code",  # junk between guesses resets nothing
            qr_text("store-999-z", "pickup", "12345680"),  # another locker's: a guess too
            qr_text(LOCKER, "deposit", "1234567890"),
            "locker:x:y",
            "1234567891",
            qr_text(LOCKER, "pickup", "12345681"),
            "12345682",
        ]
        results = [_ask_code(c, text) for text in inputs]
    finally:
        c.close()
    outcomes = [r["outcome"] for r in results]
    # Six guesses (digits, this locker's QR of both kinds, another locker's QR) are the
    # keypad's five free ones and the one that starts its wait; junk spends none of them.
    assert outcomes == [
        "wrong",
        "wrong",
        "refused",
        "wrong",
        "wrong",
        "refused",
        "wrong",
        "throttled",
        "throttled",
    ]
    assert [r["attempts_left"] for r in results[:2]] == [4, 3]
    assert evaluated(running, "keypad") == FREE + 1
    assert [e["terminal"] for e in events(running, "code_attempts_throttled")] == ["keypad"]


def _day_of_guessing(
    running: RunningDaemon, clock: FakeClock, step_s: float, **fields: Any
) -> list[tuple[float, str, str]]:
    """Wrong codes for a day, one every `step_s` at each terminal the request names
    (`fields` or the two the API accepts in turn): (steady time, terminal, outcome)."""
    methods = [fields.pop("method")] if "method" in fields else ["keypad", "scanner"]
    tried: list[tuple[float, str, str]] = []
    c = Client(running.locker.config.api.socket)
    try:
        for step in range(int(DAY / step_s)):
            running.call(lambda: clock.advance(step_s))
            for k, method in enumerate(methods):
                text = f"{(step * 3 + k) * 7919 % 100_000_000:08d}"
                outcome = _ask_code(c, text, method=method, **fields)["outcome"]
                tried.append((clock.steady(), method, outcome))
    finally:
        c.close()
    return tried


def test_naming_another_terminal_in_each_request_doubles_the_short_waits_not_the_day(
    faked: tuple[RunningDaemon, FakeClock, SimBoard],
) -> None:
    """The API lets its client say which terminal a code came from: the kiosk names the
    keypad, or the scanner for a keyboard-wedge scanner, never the camera (lockerd's own
    device). A rogue client rotating the name gets two terminals' short waits, but the
    locker's daily budget still holds."""
    running, clock, board = faked
    c = Client(running.locker.config.api.socket)
    try:
        named = c.ask(id=1, op="code", text="12345678", method="camera")
    finally:
        c.close()
    assert "method: expected keypad or scanner" in str(named), named
    tried = _day_of_guessing(running, clock, 20.0)
    per_terminal = {m: evaluated(running, m) for m in ("keypad", "scanner", "camera")}
    assert per_terminal["camera"] == 0
    total = sum(per_terminal.values())
    # The first ten minutes: each named terminal has its own allowance, three in all.
    first = [t for t, m, _ in tried if m == "keypad" and t < tried[0][0] + 600]
    one = allowed(first, ThrottlePolicy())
    first_evaluated = [
        r.actor
        for r in running.call(
            lambda: running.locker.store.audit_entries(1_000_000, ("wrong_code",))
        )
        if r.at < clock.now() - DAY + 600
    ]
    assert len(first_evaluated) == 2 * one
    # The day: the budget, then one wrong code per budget wait, whichever terminal is named.
    assert PER_DAY < total <= PER_DAY + math.ceil(DAY / BUDGET_WAIT_S) + 1
    alarms = [e["terminal"] for e in events(running, "code_attempts_throttled")]
    assert alarms.count("locker") == total - PER_DAY + 1
    assert {"keypad", "scanner"} <= set(alarms)
    assert board.unlocks == []


def test_the_staff_flag_is_a_terminal_of_its_own_held_to_its_short_waits_all_day(
    faked: tuple[RunningDaemon, FakeClock, SimBoard],
) -> None:
    """`staff: true` is the staff screen's terminal (deposit codes only), which shopper
    failures and the daily budget never make wait. Guessing there is held to that
    terminal's own waits (one code a minute at most), and each wrong code still spends
    the budget and is told to the platform once it is spent."""
    running, clock, board = faked
    tried = _day_of_guessing(running, clock, 10.0, method="keypad", staff=True)
    staff = evaluated(running, "staff")
    assert staff == allowed([t for t, _, _ in tried], ThrottlePolicy())
    assert staff <= FREE + 1 + DAY / 60
    assert staff > PER_DAY  # the budget does not stop the staff screen: figure in the report
    alarms = [e["terminal"] for e in events(running, "code_attempts_throttled")]
    assert alarms.count("locker") == staff - PER_DAY + 1
    # Meanwhile every shopper terminal waits after each of them: staff take over.
    c = Client(running.locker.config.api.socket)
    try:
        assert _ask_code(c, "12121212")["outcome"] == "throttled"
    finally:
        c.close()
    assert board.unlocks == []


def test_a_restart_keeps_the_terminals_wait_and_the_days_budget(tmp_path: Path) -> None:
    (tmp_path / "locker.toml").write_text(
        f'[locker]\nid = "{LOCKER}"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
        "[security]\nwrong_codes_per_day = 8\n"
    )
    clock = FakeClock()

    def start() -> RunningDaemon:
        return RunningDaemon(tmp_path / "locker.toml", {"b0": SimBoard("b0", 8)}, clock)

    running = start()
    try:
        c = Client(running.locker.config.api.socket)
        try:
            outcomes = [_ask_code(c, f"3333{i:04d}")["outcome"] for i in range(FREE + 1)]
        finally:
            c.close()
        assert outcomes[-1] == "throttled"
    finally:
        running.stop()
    running = start()  # the cabinet power-cycled, or the guesser made lockerd restart
    try:
        c = Client(running.locker.config.api.socket)
        try:
            assert _ask_code(c, "33339999")["outcome"] == "throttled"
            for text in ("33338888", "33338877"):  # two more spend the budget of 8
                _ask_code(c, text, method="scanner")
            waiting = _ask_code(c, "33337777", method="scanner")
            assert waiting["outcome"] == "throttled" and waiting["wait_s"] == BUDGET_WAIT_S
        finally:
            c.close()
        assert evaluated(running, "keypad") == FREE + 1
    finally:
        running.stop()
    running = start()
    try:
        c = Client(running.locker.config.api.socket)
        try:
            assert _ask_code(c, "33336666", method="scanner")["wait_s"] == BUDGET_WAIT_S
        finally:
            c.close()
    finally:
        running.stop()
