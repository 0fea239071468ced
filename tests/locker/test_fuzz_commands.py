"""Fuzz: malformed and hostile commands always get an error reply naming the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import start_locker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locker.commands import COMMANDS
from mqtt.link import PlatformLink

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "command_id",
    "sent_at",
    "expires_at",
    "order_id",
    "items",
    "parcels",
    "customer",
    "pickup_hours",
    "compartment",
    "in_service",
    "reason",
    "operator",
    "pickup_until",
]
commands = st.fixed_dictionaries({}, optional={k: json_values for k in FIELDS}) | st.dictionaries(
    st.text(max_size=20), json_values, max_size=6
)
payloads = st.one_of(
    commands.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
names = st.sampled_from(COMMANDS) | st.text(max_size=20)


@pytest.fixture(scope="module")
def locker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lk = start_locker(Path(tmp_path_factory.mktemp("fuzz")))
    # The path a command takes from the broker: schema check, then the processor.
    lk.link = PlatformLink(lk.service, lk.config.mqtt, lambda fn: fn())
    yield lk
    lk.store.close()


@pytest.mark.slow
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=names, payload=payloads)
def test_every_bad_command_gets_an_error_reply(locker: Any, name: str, payload: bytes) -> None:
    reply = locker.link.answer(name, payload)
    if reply is None:  # a valid remote open: answered when the door moves
        locker.poll()
        return
    assert set(reply) >= {"command_id", "ok"}
    if not reply["ok"]:
        assert reply["error"]["code"] and reply["error"]["message"]
    json.dumps(reply)  # always publishable
    locker.poll()  # and the locker is alive
    assert locker.service.snapshot()["locker_id"] == "store-001-a"
