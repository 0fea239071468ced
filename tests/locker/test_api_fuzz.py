"""Fuzz: whatever lines a client sends, each gets exactly one reply line, and the same
connection answers `health` afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api import Client

from drivers.sim import SimBoard
from locker.api import MAX_LINE, OPS

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities too: json.dumps writes them as bare words
    | st.text(max_size=30),  # surrogates included: dumped as "\udxxx" escapes
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
# Every op but subscribe, which would turn the connection into a stream.
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(OPS)) | st.text(max_size=10)},
    optional={
        "id": json_values,
        "text": json_values,
        "method": json_values,
        "pin": json_values,
        "token": json_values,
        "order_id": json_values,
        "compartment": json_values,
        "in_service": json_values,
    },
)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


lines = st.one_of(
    requests.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(min_size=1, max_size=300),
    st.integers(1, 40_000).map(_nested),
    st.integers(1, 20_000).map(lambda d: b'{"id": ' + _nested(d) + b', "op": "health"}'),
    st.integers(MAX_LINE - 2, MAX_LINE * 3).map(lambda n: b'{"op": "' + b"x" * n + b'"}'),
).filter(lambda line: b"\n" not in line and line.strip() != b"")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = Path(tmp_path_factory.mktemp("api-fuzz"))
    (tmp / "locker.toml").write_text(
        '[locker]\nid = "fuzz-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    daemon = RunningDaemon(tmp / "locker.toml", {"b0": SimBoard("b0", 8)})
    yield daemon
    daemon.stop()


@pytest.mark.slow
def test_every_line_gets_one_reply_and_the_connection_carries_on(running: RunningDaemon) -> None:
    assert running.locker.api is not None
    c = Client(running.locker.api.path)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(lines, min_size=1, max_size=5))
    def one_connection(sent: list[bytes]) -> None:
        c.sock.sendall(b"".join(line + b"\n" for line in sent))
        for _ in sent:
            reply: dict[str, Any] = c.read()
            assert isinstance(reply.get("ok"), bool) and "id" in reply
            assert "stream" not in reply
        assert c.ask(id="after", op="health") | {"result": None} == {
            "id": "after",
            "ok": True,
            "result": None,
        }

    try:
        one_connection()
    finally:
        c.close()
