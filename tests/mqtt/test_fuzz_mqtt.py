"""Fuzz the platform's side: every command, however hostile, gets exactly one reply with
a contract error code (never INTERNAL_ERROR), and the locker still reserves after it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import start_locker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locker.clock import rfc3339
from locker.commands import COMMANDS, CommandProcessor
from mqtt.link import PlatformLink

ROOT = Path(__file__).resolve().parent.parent.parent
CODES = set(
    json.loads((ROOT / "mqtt" / "schemas" / "reply.json").read_text())["properties"]["error"][
        "properties"
    ]["code"]["enum"]
) - {"INTERNAL_ERROR"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 0, -1])
    | st.floats()  # NaN and ±Infinity included: Python's json writes and reads them
    | st.text(max_size=30)
    | st.sampled_from(["\ud800", "a\udfffb", "\x00", "2026-11-25T08:00:00Z", "S", "XL"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "order_id": st.text(max_size=20),
    "items": st.lists(
        st.fixed_dictionaries(
            {
                "sku": st.text(max_size=5),
                "qty": st.integers(-2, 6),
                "size": st.sampled_from("SMLX"),
            },
            optional={"fresh": st.booleans(), "name": st.text(max_size=5)},
        ),
        max_size=3,
    ),
    "parcels": st.lists(st.fixed_dictionaries({"size": st.sampled_from(["S", "M", "L", "XL"])})),
    "customer": st.fixed_dictionaries(
        {}, optional={"phone_tail": st.text(max_size=5), "accessible": st.booleans()}
    ),
    "pickup_hours": st.integers(-5, 10**6),
    "compartment": st.integers(-3, 60),
    "in_service": st.booleans(),
    "reason": st.text(max_size=10),
    "operator": st.text(max_size=10),
    "pickup_until": st.sampled_from(["2026-11-25T08:00:00Z", "2999-01-01T00:00:00Z"]),
    "expires_at": st.sampled_from(["2026-11-25T08:00:00Z", "2999-01-01T00:00:00Z"]),
}


def deep(depth: int) -> bytes:
    return b'{"command_id": "deep", "sent_at": "2026-11-25T08:00:00Z", "x": ' + (
        b"[" * depth + b"]" * depth + b"}"
    )


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(COMMANDS) | st.text(max_size=12))
    kind = draw(st.integers(0, 3))
    if kind == 3:
        return name, draw(st.sampled_from([deep(50), deep(5000), deep(200_000)[:60_000]]))
    data: dict[str, Any] = {"command_id": str(uuid.uuid4()), "sent_at": "NOW"}
    for key, good in FIELDS.items():
        if draw(st.booleans()):
            # a plausible value, or any JSON value at all (a wrong type for every field)
            data[key] = draw(good if kind == 0 else json_values)
    if kind == 2:  # the envelope itself hostile
        for key in ("command_id", "sent_at"):
            if draw(st.booleans()):
                data[key] = draw(json_values)
    return name, json.dumps(data).replace('"NOW"', '"SENT_AT"').encode()


def check(reply: dict[str, Any] | None, locker: Any) -> None:
    if reply is None:  # a remote open: answered once the door moves
        locker.poll()
        return
    assert set(reply) >= {"command_id", "ok"}
    if reply["ok"]:
        assert "result" in reply
    else:
        assert reply["error"]["code"] in CODES, reply
        assert reply["error"]["message"]
    json.dumps(reply, allow_nan=False).encode()  # publishable as JSON, as UTF-8


@pytest.fixture(scope="module")
def locker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lk = start_locker(Path(tmp_path_factory.mktemp("fuzz-mqtt")))
    lk.link = PlatformLink(lk.service, lk.config.mqtt, lambda fn: fn())
    yield lk
    lk.store.close()


def still_reserves(locker: Any) -> None:
    order = f"SO-alive-{uuid.uuid4().hex[:8]}"
    reply = locker.reserve(order)
    assert reply["ok"] or reply["error"]["code"] == "NO_COMPARTMENT_AVAILABLE", reply
    if reply["ok"]:
        assert locker.command("cancel", order_id=order, reason="fuzz")["ok"]


@pytest.mark.slow
@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=commands(), via_link=st.booleans())
def test_every_command_gets_one_contract_reply(
    locker: Any, command: tuple[str, bytes], via_link: bool
) -> None:
    name, payload = command
    payload = payload.replace(b"SENT_AT", rfc3339(locker.clock.now()).encode())
    processor: CommandProcessor = locker.commands
    reply = locker.link.answer(name, payload) if via_link else processor.handle(name, payload)
    check(reply, locker)
    still_reserves(locker)


@pytest.mark.parametrize(
    "payload",
    [
        deep(100_000)[:64_000],
        b'{"command_id": "nan", "sent_at": "SENT_AT", "order_id": "SO-n", "pickup_hours": NaN,'
        b' "items": [{"sku": "1", "qty": 1, "size": "S"}]}',
        b'{"command_id": "inf", "sent_at": "SENT_AT", "compartment": Infinity}',
        b'{"command_id": "big", "sent_at": "SENT_AT", "compartment": ' + b"9" * 400 + b"}",
        b'{"command_id": "\\ud800", "sent_at": "SENT_AT"}',
        b'{"command_id": "s-1", "sent_at": "SENT_AT", "order_id": "\\udfff",'
        b' "items": [{"sku": "\\ud800", "qty": 1, "size": "S"}]}',
    ],
)
@pytest.mark.parametrize("name", ["reserve", "open", "set_service", "cancel", "sync", "\ud800"])
def test_known_hostile_payloads(locker: Any, payload: bytes, name: str) -> None:
    payload = payload.replace(b"SENT_AT", rfc3339(locker.clock.now()).encode())
    for reply in (locker.commands.handle(name, payload), locker.link.answer(name, payload)):
        check(reply, locker)
    still_reserves(locker)
