"""The standby controller: real TLS, a real server on a loopback port, real SQLite files."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import sqlite3
import ssl
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from locker import replica
from locker.dbfile import check_file
from locker.replica import (
    REPLICA_NAME,
    Image,
    ReplicaWriter,
    encode_patch,
    image_of,
    patch_path,
    snapshot,
)
from locker.standby import MAX_HEADER, MAX_SNAPSHOT, StandbyTarget
from locker.standby_server import StandbyServer

SECRET = b"the store's shared standby secret"
LOCKER = "store-001-a"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(name: str, cwd: Path) -> None:
    openssl("req", "-x509", *EC, "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


def make_leaf(name: str, ca: str, san: str, cwd: Path) -> None:
    openssl("req", *EC, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.cnf").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.cnf",
            "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's CA and the standby's certificate; a rogue CA's; one for another host."""
    folder = tmp_path_factory.mktemp("certs")
    make_ca("ca", folder)
    make_leaf("server", "ca", "DNS:localhost,IP:127.0.0.1", folder)
    make_leaf("elsewhere", "ca", "DNS:elsewhere.example", folder)
    make_ca("rogue-ca", folder)
    make_leaf("rogue", "rogue-ca", "DNS:localhost,IP:127.0.0.1", folder)
    return folder


def make_server(
    certs: Path, replica_dir: Path, cert: str = "server", port: int = 0
) -> StandbyServer:
    server = StandbyServer(
        "127.0.0.1", port, LOCKER, SECRET, certs / f"{cert}.crt", certs / f"{cert}.key", replica_dir
    )
    server.start()
    return server


@pytest.fixture
def standby(tmp_path: Path, certs: Path) -> Iterator[StandbyServer]:
    server = make_server(certs, tmp_path / "standby")
    yield server
    server.close()


def make_target(
    tmp_path: Path, certs: Path, port: int, secret: bytes = SECRET, locker_id: str = LOCKER
) -> StandbyTarget:
    return StandbyTarget(
        "127.0.0.1", port, locker_id, secret, certs / "ca.crt", tmp_path / "work", timeout_s=10
    )


def database(path: Path, numbers: list[int]) -> None:
    """A WAL database like the locker's, holding `numbers`."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, pad BLOB)")
        db.execute("DELETE FROM t")
        db.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in numbers])
        db.execute("PRAGMA user_version=7")
    finally:
        db.close()


def rows(path: Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 7
        return [r[0] for r in db.execute("SELECT n FROM t ORDER BY n")]
    finally:
        db.close()


def copy_of(server: StandbyServer) -> Path:
    return server.replica_dir / REPLICA_NAME


def leftovers(server: StandbyServer) -> list[str]:
    return sorted(p.name for p in server.replica_dir.iterdir() if p.name != REPLICA_NAME)


def seeded(tmp_path: Path, certs: Path, server: StandbyServer) -> Path:
    """The standby holds rows 1-3 from a good put; returns the primary's database."""
    source = tmp_path / "locker.db"
    database(source, [1, 2, 3])
    target = make_target(tmp_path, certs, server.port)
    target.put(source)
    target.close()
    assert rows(copy_of(server)) == [1, 2, 3]
    return source


def still_serves(tmp_path: Path, certs: Path, server: StandbyServer) -> None:
    """The previous copy is whole and unchanged, and the next good put is stored."""
    assert rows(copy_of(server)) == [1, 2, 3]
    assert leftovers(server) == []
    source = tmp_path / "next.db"
    database(source, [4, 5])
    target = make_target(tmp_path, certs, server.port)
    target.put(source)
    target.close()
    assert rows(copy_of(server)) == [4, 5]


class Raw:
    """A primary written from the module's documented protocol, to misbehave with."""

    def __init__(self, port: int, certs: Path, tls: bool = True) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def line(self) -> dict[str, Any]:
        header: dict[str, Any] = json.loads(self.rfile.readline(MAX_HEADER + 1))
        return header

    def send(self, header: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(header).encode() + b"\n")

    def authenticate(self, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer the challenge (or replay `auth`); return the auth frame and the reply."""
        nonce = bytes.fromhex(self.line()["nonce"])
        mine = os.urandom(32)
        if auth is None:
            mac = hmac.new(
                SECRET, b"locker-standby client\0" + nonce + LOCKER.encode() + mine, "sha256"
            )
            auth = {"type": "auth", "locker_id": LOCKER, "client_nonce": mine.hex(),
                    "mac": mac.hexdigest()}  # fmt: skip
        self.send(auth)
        reply = self.line()
        if reply["type"] == "auth_ok":
            proof = hmac.new(
                SECRET,
                b"locker-standby server\0" + bytes.fromhex(auth["client_nonce"]) + nonce
                + LOCKER.encode(),
                "sha256",
            )  # fmt: skip
            assert reply["mac"] == proof.hexdigest()
        return {"auth": auth, "reply": reply}

    def hung_up(self) -> list[dict[str, Any]]:
        """Read until the standby hangs up (a socket timeout fails the test if it does not):
        the frames it sent before."""
        frames = []
        try:
            while line := self.rfile.readline(MAX_HEADER + 1):
                frames.append(json.loads(line))
        except (ConnectionError, ssl.SSLError):
            pass  # a reset is a hang-up too
        return frames

    def hung_up_raw(self) -> None:
        """Read plain bytes until the standby hangs up (a socket timeout fails the test)."""
        try:
            while self.sock.recv(4096):
                pass
        except ConnectionError:
            pass

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def test_a_snapshot_reaches_the_standby_whole_private_and_with_its_rows(
    tmp_path: Path, certs: Path, standby: StandbyServer
) -> None:
    assert standby.last_received_at is None
    source = tmp_path / "locker.db"
    database(source, list(range(100)))
    target = make_target(tmp_path, certs, standby.port)
    before = time.time()
    target.put(source)
    target.close()
    assert rows(copy_of(standby)) == list(range(100))
    assert stat.S_IMODE(copy_of(standby).stat().st_mode) == 0o600
    assert leftovers(standby) == []
    assert standby.last_received_at is not None and standby.last_received_at >= before
    assert list((tmp_path / "work").iterdir()) == []  # the local snapshot is not left behind
    assert str(target) == f"standby 127.0.0.1:{standby.port}"


def test_successive_puts_replace_the_copy(
    tmp_path: Path, certs: Path, standby: StandbyServer
) -> None:
    source = tmp_path / "locker.db"
    target = make_target(tmp_path, certs, standby.port)
    try:
        for numbers in ([1], [1, 2, 3], [9]):
            database(source, numbers)
            target.put(source)  # over the one connection, kept open between puts
            assert rows(copy_of(standby)) == numbers
            assert leftovers(standby) == []
    finally:
        target.close()


def test_a_put_after_the_standby_restarted_reconnects_at_once(tmp_path: Path, certs: Path) -> None:
    source = tmp_path / "locker.db"
    server = make_server(certs, tmp_path / "standby")
    target = make_target(tmp_path, certs, server.port)
    try:
        database(source, [1])
        target.put(source)
        port = server.port
        server.close()  # the connection the target keeps open is gone with it
        server = make_server(certs, tmp_path / "standby", port=port)
        database(source, [2])
        target.put(source)  # no error: the dead connection is replaced, not reported
        assert rows(copy_of(server)) == [2]
    finally:
        target.close()
        server.close()


def test_a_wrong_secret_is_refused_and_the_copy_is_unchanged(
    tmp_path: Path, certs: Path, standby: StandbyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    source = seeded(tmp_path, certs, standby)
    database(source, [666])
    impostor = make_target(tmp_path, certs, standby.port, secret=b"a guessed secret")
    with pytest.raises(OSError, match="wrong secret"):
        impostor.put(source)
    assert "wrong secret" in caplog.text
    assert SECRET.decode() not in caplog.text and "a guessed secret" not in caplog.text
    still_serves(tmp_path, certs, standby)


def test_a_different_locker_id_is_refused(
    tmp_path: Path, certs: Path, standby: StandbyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    source = seeded(tmp_path, certs, standby)
    database(source, [666])
    other = make_target(tmp_path, certs, standby.port, locker_id="store-002-b")
    with pytest.raises(OSError, match="store-002-b"):
        other.put(source)
    assert "'store-002-b' is not 'store-001-a'" in caplog.text
    still_serves(tmp_path, certs, standby)


def test_a_replayed_authentication_is_refused(
    tmp_path: Path, certs: Path, standby: StandbyServer
) -> None:
    seeded(tmp_path, certs, standby)
    first = Raw(standby.port, certs)
    recorded = first.authenticate()
    assert recorded["reply"]["type"] == "auth_ok"
    first.close()
    second = Raw(standby.port, certs)
    replayed = second.authenticate(recorded["auth"])
    assert replayed["reply"] == {"type": "error", "error": "authentication failed: wrong secret"}
    assert second.hung_up() == []
    second.close()
    still_serves(tmp_path, certs, standby)


@pytest.mark.parametrize(
    ("misbehaviour", "logged"),
    [
        ("plain TCP garbage", "dropped"),
        ("garbage line", "header is not JSON"),
        ("oversized header", f"header line over {MAX_HEADER} bytes"),
        ("hang up after TLS", None),
        ("garbage instead of auth", "expected a 'auth' frame"),
    ],
)
def test_garbage_before_authentication_is_dropped_and_the_standby_serves_on(
    tmp_path: Path,
    certs: Path,
    standby: StandbyServer,
    caplog: pytest.LogCaptureFixture,
    misbehaviour: str,
    logged: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    seeded(tmp_path, certs, standby)
    bad = Raw(standby.port, certs, tls=misbehaviour != "plain TCP garbage")
    if misbehaviour not in ("plain TCP garbage", "hang up after TLS"):
        assert bad.line()["type"] == "hello"
    if misbehaviour == "plain TCP garbage":
        bad.sock.sendall(os.urandom(4096))
    elif misbehaviour == "garbage line":
        bad.sock.sendall(b"\x00\xff{not json\n")
    elif misbehaviour == "oversized header":
        # Hung up on after the first 4 KiB: what it did not read resets the link.
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            bad.sock.sendall(b"{" + b" " * 100_000)
    elif misbehaviour == "garbage instead of auth":
        bad.send({"type": "snapshot", "length": 10, "raw_length": 10, "sha256": "00" * 32})
    if misbehaviour == "plain TCP garbage":
        bad.hung_up_raw()
    elif misbehaviour != "hang up after TLS":
        frames = bad.hung_up()
        # Only the reset of an oversized header (unread bytes) may lose the error frame.
        assert len(frames) == 1 or (misbehaviour == "oversized header" and frames == [])
        assert all(f["type"] == "error" and logged in f["error"] for f in frames)
    bad.close()
    if logged is not None:
        wait_for(lambda: logged in caplog.text, f"the log says {logged!r}")
    still_serves(tmp_path, certs, standby)


def packed(payload: bytes, **overrides: Any) -> tuple[dict[str, Any], bytes]:
    body = zlib.compress(payload)
    header = {"type": "snapshot", "length": len(body), "raw_length": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest(), **overrides}  # fmt: skip
    return header, body


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("digest mismatch", "does not match its sha256"),
        ("not a database", "not an SQLite database"),
        ("truncated database", "SQLite"),
        ("inflates beyond raw_length", "inflates beyond"),
        ("oversized frame", "over the cap"),
        ("oversized raw_length", "over the cap"),
        ("negative length", "not a byte count"),
        ("bytes after the stream", "after the end of the zlib stream"),
    ],
)
def test_a_bad_snapshot_from_an_authenticated_primary_is_refused(
    tmp_path: Path,
    certs: Path,
    standby: StandbyServer,
    caplog: pytest.LogCaptureFixture,
    case: str,
    error: str,
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    source = seeded(tmp_path, certs, standby)
    database(source, list(range(200)))
    db = sqlite3.connect(str(source))
    db.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, as sent
    db.close()
    good = source.read_bytes()
    header, body = packed(good)
    cases: dict[str, Callable[[], tuple[dict[str, Any], bytes]]] = {
        "digest mismatch": lambda: packed(good, sha256=hashlib.sha256(b"x").hexdigest()),
        "not a database": lambda: packed(b"not SQLite at all " * 1000),
        "truncated database": lambda: packed(good[: len(good) // 2]),
        "inflates beyond raw_length": lambda: packed(good, raw_length=len(good) - 1),
        "oversized frame": lambda: ({**header, "length": MAX_SNAPSHOT + 1}, b""),
        "oversized raw_length": lambda: packed(good, raw_length=MAX_SNAPSHOT + 1),
        "negative length": lambda: ({**header, "length": -1}, b""),
        "bytes after the stream": lambda: ({**header, "length": len(body) + 4}, body + b"junk"),
    }
    header, body = cases[case]()
    bad = Raw(standby.port, certs)
    assert bad.authenticate()["reply"]["type"] == "auth_ok"
    bad.send(header)
    with contextlib.suppress(ConnectionError, ssl.SSLError):  # refused on the header alone
        bad.sock.sendall(body)
    frames = bad.hung_up()
    bad.close()
    assert len(frames) == 1 and frames[0]["type"] == "error" and error in frames[0]["error"]
    assert error in caplog.text
    still_serves(tmp_path, certs, standby)


def test_a_primary_that_dies_mid_snapshot_leaves_the_copy_whole(
    tmp_path: Path, certs: Path, standby: StandbyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    source = seeded(tmp_path, certs, standby)
    database(source, list(range(2000)))
    header, body = packed(source.read_bytes())
    bad = Raw(standby.port, certs)
    assert bad.authenticate()["reply"]["type"] == "auth_ok"
    bad.send(header)
    bad.sock.sendall(body[: len(body) // 2])
    bad.close()
    wait_for(lambda: "connection closed mid-snapshot" in caplog.text, "the standby noticed")
    still_serves(tmp_path, certs, standby)


def test_a_certificate_not_signed_by_the_stores_ca_is_refused(tmp_path: Path, certs: Path) -> None:
    rogue = make_server(certs, tmp_path / "rogue", cert="rogue")
    try:
        source = tmp_path / "locker.db"
        database(source, [1])
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            make_target(tmp_path, certs, rogue.port).put(source)
        assert "mismatch" not in str(refused.value)  # refused for its issuer, not its name
        assert not copy_of(rogue).exists()
    finally:
        rogue.close()


def test_a_certificate_for_another_host_is_refused(tmp_path: Path, certs: Path) -> None:
    elsewhere = make_server(certs, tmp_path / "elsewhere", cert="elsewhere")
    try:
        source = tmp_path / "locker.db"
        database(source, [1])
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            make_target(tmp_path, certs, elsewhere.port).put(source)
        assert not copy_of(elsewhere).exists()
    finally:
        elsewhere.close()


def test_a_standby_that_cannot_prove_the_secret_gets_no_snapshot(
    tmp_path: Path, certs: Path
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.crt", certs / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def impostor() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.settimeout(10)
            rfile = conn.makefile("rb")
            conn.sendall(json.dumps({"type": "hello", "version": 1, "nonce": "ab" * 32}).encode())
            conn.sendall(b"\n")
            rfile.readline()  # the primary's answer
            conn.sendall(json.dumps({"type": "auth_ok", "mac": "00" * 32}).encode() + b"\n")
            received.append(rfile.read())  # all it sends before hanging up

    thread = threading.Thread(target=impostor)
    thread.start()
    try:
        source = tmp_path / "locker.db"
        database(source, [1])
        target = make_target(tmp_path, certs, listener.getsockname()[1])
        with pytest.raises(OSError, match="did not prove"):
            target.put(source)
        thread.join(10)
        assert received == [b""]
    finally:
        listener.close()


def test_the_replica_writer_keeps_the_standby_current_through_an_outage(
    tmp_path: Path, certs: Path
) -> None:
    source = tmp_path / "locker.db"
    database(source, [])
    db = sqlite3.connect(str(source), isolation_level=None, check_same_thread=False)
    server = make_server(certs, tmp_path / "standby")
    target = make_target(tmp_path, certs, server.port)
    writer = ReplicaWriter(source, target, min_interval_s=0.01)
    writer.start()
    copy = copy_of(server)
    try:
        for n in range(3):
            db.execute("INSERT INTO t VALUES (?, NULL)", (n,))
            writer.committed()
            expected = list(range(n + 1))

            def arrived(expected: list[int] = expected) -> bool:
                return copy.exists() and rows(copy) == expected

            wait_for(arrived, f"row {n} on the standby")
        wait_for(lambda: writer.status().lag_s == 0, "caught up")
        assert writer.status().ok and writer.status().target == str(target)

        port = server.port
        server.close()  # the standby goes away
        db.execute("INSERT INTO t VALUES (3, NULL)")
        writer.committed()
        wait_for(lambda: not writer.status().ok, "the outage reported")
        assert writer.status().detail != "" and writer.status().lag_s > 0
        assert rows(copy) == [0, 1, 2]

        server = make_server(certs, tmp_path / "standby", port=port)  # it comes back
        wait_for(lambda: writer.status().ok, "copying again", timeout=60)
        wait_for(lambda: writer.status().lag_s == 0, "caught up again")
        assert rows(copy) == [0, 1, 2, 3]
    finally:
        writer.close()
        target.close()
        server.close()
        db.close()


# -- incremental copies ----------------------------------------------------------------


def snapshot_bytes(source: Path, folder: Path) -> bytes:
    """What a consistent snapshot of `source` holds now, byte for byte."""
    folder.mkdir(exist_ok=True)
    snapshot(source, folder / "expected.db")
    return (folder / "expected.db").read_bytes()


def grow(source: Path, numbers: list[int]) -> None:
    db = sqlite3.connect(str(source), isolation_level=None)
    try:
        db.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in numbers])
    finally:
        db.close()


def test_after_a_whole_copy_the_standby_gets_only_changed_pages_and_holds_the_same_bytes(
    tmp_path: Path, certs: Path, standby: StandbyServer
) -> None:
    source = tmp_path / "locker.db"
    database(source, list(range(3000)))
    target = make_target(tmp_path, certs, standby.port)
    try:
        target.put(source)
        assert target.last_put is not None and target.last_put.whole
        whole_bytes = target.last_put.bytes
        for n in range(3):
            grow(source, [10_000 + n])
            target.put(source)  # on the same connection: a patch
            put = target.last_put
            assert put is not None and not put.whole and put.pages <= 4
            assert put.bytes < whole_bytes // 20
            assert copy_of(standby).read_bytes() == snapshot_bytes(source, tmp_path / "x")
            assert leftovers(standby) == []
        assert rows(copy_of(standby)) == [*range(3000), 10_000, 10_001, 10_002]
    finally:
        target.close()
    assert list((tmp_path / "work").iterdir()) == []


def test_a_reconnection_falls_back_to_a_whole_copy(tmp_path: Path, certs: Path) -> None:
    source = tmp_path / "locker.db"
    server = make_server(certs, tmp_path / "standby")
    target = make_target(tmp_path, certs, server.port)
    try:
        database(source, [1, 2])
        target.put(source)
        grow(source, [3])
        target.put(source)
        assert target.last_put is not None and not target.last_put.whole
        port = server.port
        server.close()
        server = make_server(certs, tmp_path / "standby", port=port)
        grow(source, [4])
        target.put(source)  # the standby's state is unknown after a reconnection
        assert target.last_put is not None and target.last_put.whole
        assert rows(copy_of(server)) == [1, 2, 3, 4]
        target.close()  # a new connection too
        grow(source, [5])
        target.put(source)
        assert target.last_put is not None and target.last_put.whole
        grow(source, [6])
        target.put(source)
        assert target.last_put is not None and not target.last_put.whole
        assert copy_of(server).read_bytes() == snapshot_bytes(source, tmp_path / "x")
    finally:
        target.close()
        server.close()


def locker_database(path: Path, locker_id: str, epoch: int, numbers: list[int]) -> None:
    """A self-contained database with the facts a standby checks (whose, which epoch)."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        for table in ("audit (at REAL)", "order_stages (at REAL)", "commands (received_at REAL)"):
            db.execute(f"CREATE TABLE {table}")
        db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT)")
        db.execute("INSERT INTO outbox DEFAULT VALUES")
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("locker_id", locker_id), ("epoch", str(epoch))]
        )
        db.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in numbers])
        db.execute("PRAGMA user_version=7")
    finally:
        db.close()


def patch_frame(base: Path, new: Path, **overrides: Any) -> tuple[dict[str, Any], bytes]:
    """A patch turning the file `base` into the file `new`, every page sent."""
    held, image = image_of(base), image_of(new)
    data = encode_patch(image, new, list(range(len(image.hashes))), held)
    body = zlib.compress(data)
    header = {"type": "patch", "version": 1, "length": len(body), "raw_length": len(data),
              "sha256": image.sha256.hex(), **overrides}  # fmt: skip
    return header, body


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("header digest differs", "does not match its sha256"),
        ("wrong result digest", "patched copy does not match its sha256"),
        ("not the base", "not this patch's base"),
        ("altered in transit", "torn or altered"),
        ("older epoch", "older than the copy held"),
        ("another locker", "holds locker 'store-002-b'"),
        ("unknown patch version", "patch version 99"),
    ],
)
def test_a_bad_patch_is_refused_and_the_previous_copy_stays_whole_and_verifiable(
    tmp_path: Path,
    certs: Path,
    standby: StandbyServer,
    caplog: pytest.LogCaptureFixture,
    case: str,
    error: str,
) -> None:
    caplog.set_level(logging.INFO, logger="locker.standby")
    source = tmp_path / "locker.db"
    locker_database(source, LOCKER, 2, [1, 2, 3])
    target = make_target(tmp_path, certs, standby.port)
    target.put(source)
    target.close()
    held = copy_of(standby).read_bytes()
    base = tmp_path / "base.db"
    base.write_bytes(held)
    new = tmp_path / "new.db"
    locker_database(new, LOCKER, 2, [1, 2, 3, 666])
    cases: dict[str, Callable[[], tuple[dict[str, Any], bytes]]] = {
        "header digest differs": lambda: patch_frame(base, new, sha256="00" * 32),
        "older epoch": lambda: (locker_database(new, LOCKER, 1, [666]), patch_frame(base, new))[1],
        "another locker": lambda: (
            locker_database(new, "store-002-b", 2, [666]),
            patch_frame(base, new),
        )[1],
        "unknown patch version": lambda: patch_frame(base, new, version=99),
    }
    if case in cases:
        header, body = cases[case]()
    else:
        image = image_of(new)
        if case == "wrong result digest":
            image = Image(image.page_size, image.hashes, image.length, bytes(32))
        other = base
        if case == "not the base":
            other = tmp_path / "other.db"
            locker_database(other, LOCKER, 2, [5])
        data = encode_patch(image, new, list(range(len(image.hashes))), image_of(other))
        if case == "altered in transit":
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        body = zlib.compress(data)
        header = {"type": "patch", "version": 1, "length": len(body), "raw_length": len(data),
                  "sha256": image.sha256.hex()}  # fmt: skip
    bad = Raw(standby.port, certs)
    assert bad.authenticate()["reply"]["type"] == "auth_ok"
    bad.send(header)
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        bad.sock.sendall(body)
    frames = bad.hung_up()
    bad.close()
    assert len(frames) == 1 and frames[0]["type"] == "error", frames
    assert error in frames[0]["error"]
    assert error in caplog.text
    # The previous copy, byte for byte, whole; and the next put is stored.
    assert copy_of(standby).read_bytes() == held
    assert check_file(copy_of(standby)).ok
    assert leftovers(standby) == []
    locker_database(source, LOCKER, 2, [1, 2, 3, 4])
    target.put(source)
    grow(source, [5])
    target.put(source)
    target.close()
    assert rows(copy_of(standby)) == [1, 2, 3, 4, 5]


def test_a_good_patch_sent_by_hand_is_stored_exactly(
    tmp_path: Path, certs: Path, standby: StandbyServer
) -> None:
    """The frame as documented works: the refusals above are for what they name."""
    source = tmp_path / "locker.db"
    locker_database(source, LOCKER, 2, [1, 2, 3])
    target = make_target(tmp_path, certs, standby.port)
    target.put(source)
    target.close()
    base = tmp_path / "base.db"
    base.write_bytes(copy_of(standby).read_bytes())
    new = tmp_path / "new.db"
    locker_database(new, LOCKER, 3, [1, 2, 3, 4])
    header, body = patch_frame(base, new)
    good = Raw(standby.port, certs)
    assert good.authenticate()["reply"]["type"] == "auth_ok"
    good.send(header)
    good.sock.sendall(body)
    assert good.line() == {"type": "stored", "sha256": header["sha256"]}
    good.close()
    assert copy_of(standby).read_bytes() == new.read_bytes()
    assert rows(copy_of(standby)) == [1, 2, 3, 4]


def test_a_standby_left_with_a_patch_by_a_crash_completes_it_at_start(
    tmp_path: Path, certs: Path
) -> None:
    replica_dir = tmp_path / "standby"
    replica_dir.mkdir()
    base = replica_dir / REPLICA_NAME
    locker_database(base, LOCKER, 2, [1, 2, 3])
    new = tmp_path / "new.db"
    locker_database(new, LOCKER, 2, [1, 2, 3, 4])
    held, image = image_of(base), image_of(new)
    patch_path(base).write_bytes(encode_patch(image, new, list(range(len(image.hashes))), held))
    server = make_server(certs, replica_dir)  # stopped after the patch was on its disk
    try:
        assert copy_of(server).read_bytes() == new.read_bytes()
        assert leftovers(server) == []
        source = tmp_path / "locker.db"
        locker_database(source, LOCKER, 2, [1, 2, 3, 4, 5])
        target = make_target(tmp_path, certs, server.port)
        target.put(source)
        target.close()
        assert rows(copy_of(server)) == [1, 2, 3, 4, 5]
    finally:
        server.close()


def test_a_standby_of_the_first_release_gets_whole_copies_and_refuses_a_patch_cleanly(
    tmp_path: Path, certs: Path
) -> None:
    server = StandbyServer(
        "127.0.0.1", 0, LOCKER, SECRET, certs / "server.crt", certs / "server.key",
        tmp_path / "standby", accepts_patches=False,
    )  # fmt: skip
    server.start()
    source = tmp_path / "locker.db"
    target = make_target(tmp_path, certs, server.port)
    try:
        database(source, [1])
        target.put(source)
        grow(source, [2])
        target.put(source)
        assert target.last_put is not None and target.last_put.whole
        assert rows(copy_of(server)) == [1, 2]
        held = copy_of(server).read_bytes()
        base = tmp_path / "base.db"
        base.write_bytes(held)
        grow(source, [3])
        header, body = patch_frame(base, source)
        raw = Raw(server.port, certs)
        hello_and_auth = raw.authenticate()
        assert hello_and_auth["reply"]["type"] == "auth_ok"
        raw.send(header)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            raw.sock.sendall(body)
        frames = raw.hung_up()
        raw.close()
        assert frames == [{"type": "error", "error": "expected a 'snapshot' frame, got 'patch'"}]
        assert copy_of(server).read_bytes() == held
    finally:
        target.close()
        server.close()


def test_a_page_checksum_that_misses_a_change_costs_a_whole_copy_never_a_wrong_one(
    tmp_path: Path, certs: Path, standby: StandbyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "locker.db"
    database(source, list(range(1000)))
    target = make_target(tmp_path, certs, standby.port)
    try:
        target.put(source)
        monkeypatch.setattr(replica, "page_checksum", lambda page: b"same")  # every page
        grow(source, [5000])
        target.put(source)  # the patch misses pages: refused on its digest, sent whole
        assert target.last_put is not None and target.last_put.whole
        assert copy_of(standby).read_bytes() == snapshot_bytes(source, tmp_path / "x")
        assert leftovers(standby) == []
    finally:
        target.close()
