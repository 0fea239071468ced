"""Replica lag to a standby over TLS on this machine (printed, never asserted).

What is measured, for each database size: `--commits` commits (one event each, through
the real store, synchronous=FULL) at `--rate` a second on the primary; lockerd's
ReplicaWriter (min_interval_s 0.5, as lockerd builds it) sends snapshots through
StandbyTarget to a StandbyServer on 127.0.0.1 (TLS 1.3, the shared-secret handshake):
the first whole, then only the pages changed since the copy the standby acknowledged.

- commit->received: from the primary's COMMIT returning to the standby holding a copy
  with that commit in it: for a patch, the result built in memory and its SHA-256 and
  facts checked, the redo log written and fsynced, the pages written and fsynced and
  "stored" sent (the server's on_received call); for a whole copy, decompressed, digest
  and integrity_check passed, fsynced and renamed. p50, p99 and max over the commits.
- put: one StandbyTarget.put as the writer's thread sees it (snapshot with SQLite's
  backup into the scratch directory, pages hashed, the patch or the whole file zlib'd,
  sent, the standby's check and fsync, the ack); with how many were patches and the
  bytes one sends (p50).

Both ends share this machine's CPUs and disk: on a Raspberry Pi primary and standby
each have their own, but each is several times slower than a desktop core.

The database is the locker's schema padded with audit rows of JSON-like text (about
as compressible as a real one: codes' hashes and ids are random, the rest is not).

Run: .venv/bin/python bench/bench_standby.py [--sizes 5,50] [--commits 200] [--rate 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from locker.codes import CodeBook  # noqa: E402
from locker.replica import PutInfo, ReplicaWriter  # noqa: E402
from locker.standby import StandbyTarget  # noqa: E402
from locker.standby_server import Received, StandbyServer  # noqa: E402
from locker.storage import Store  # noqa: E402

LOCKER = "bench-standby"
SECRET = b"bench shared secret"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(folder: Path) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    openssl("req", *ec, "-subj", "/CN=standby", "-keyout", "server.key",
            "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.cnf",
            "-out", "server.crt", cwd=folder)  # fmt: skip


def padded_store(path: Path, megabytes: int) -> Store:
    store = Store(path, CodeBook.from_key(os.urandom(32)), locker_id=LOCKER)
    n = 0
    while path.stat().st_size + path.with_name(path.name + "-wal").stat().st_size < (
        megabytes * 1024 * 1024
    ):
        with store.transaction() as tx:
            for _ in range(2000):
                n += 1
                detail = (
                    f'{{"order_id":"SO-{n:08d}","compartments":[{n % 48 + 1}],'
                    f'"code_hash":"{os.urandom(16).hex()}","by":"platform","size":"M",'
                    f'"command_id":"{os.urandom(8).hex()}","note":"reserved for pickup"}}'
                )
                tx.audit(time.time(), "platform", "reserve", f"SO-{n:08d}", n % 48 + 1, detail)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


class Timed:
    """A target that records how long each put takes."""

    def __init__(self, target: StandbyTarget) -> None:
        self.target = target
        self.puts: list[float] = []
        self.sent: list[PutInfo] = []

    def __str__(self) -> str:
        return str(self.target)

    def put(self, source: Path) -> int:
        started = time.perf_counter()
        seq = self.target.put(source)
        self.puts.append(time.perf_counter() - started)
        if self.target.last_put is not None:
            self.sent.append(self.target.last_put)
        return seq


def run(folder: Path, certs: Path, megabytes: int, commits: int, rate: float) -> None:
    store = padded_store(folder / "locker.db", megabytes)
    size_mb = store.path.stat().st_size / 1e6
    arrivals: list[tuple[float, int]] = []  # (monotonic, seq) of each stored copy
    arrived = threading.Lock()

    def on_received(received: Received) -> None:
        with arrived:
            arrivals.append((time.monotonic(), received.seq))

    server = StandbyServer(
        "127.0.0.1", 0, LOCKER, SECRET, certs / "server.crt", certs / "server.key",
        folder / "standby", on_received=on_received,
    )  # fmt: skip
    server.start()
    shm = Path("/dev/shm")  # a tmpfs, as lockerd's /run/locker
    workdir = shm / f"{folder.parent.name}-{folder.name}" if shm.is_dir() else folder / "work"
    target = Timed(
        StandbyTarget("127.0.0.1", server.port, LOCKER, SECRET, certs / "ca.crt", workdir)
    )
    writer = ReplicaWriter(store.path, target)
    store.hub.committed.subscribe(lambda commit: writer.committed())
    writer.start()
    committed: dict[int, float] = {}
    try:
        while not arrivals:  # the first whole copy, before the clock starts
            time.sleep(0.05)
        start = time.monotonic()
        for i in range(commits):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            with store.transaction() as tx:
                seq = tx.emit("bench", {"n": i}, time.time())
            committed[seq] = time.monotonic()
        last = max(committed)
        deadline = time.monotonic() + 120
        while max(s for _, s in arrivals) < last and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.close()
        target.target.close()
        server.close()
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    lags = []
    for seq, at in committed.items():
        landed = [t for t, s in arrivals if s >= seq and t >= at]
        if landed:
            lags.append(min(landed) - at)
    missing = len(committed) - len(lags)
    print(
        f"{size_mb:5.1f} MB  commit->received over {len(lags)} commits at {rate:g}/s:"
        f" p50 {pct(lags, 0.5) * 1000:6.0f} ms  p99 {pct(lags, 0.99) * 1000:6.0f} ms"
        f"  max {max(lags) * 1000:6.0f} ms" + (f"  ({missing} never arrived)" if missing else "")
    )
    puts = target.puts[1:]  # the first put also connects and authenticates
    sent = target.sent[1:]
    patches = [p for p in sent if not p.whole]
    print(
        f"{'':8} put (snapshot, hash, compress, send, check, fsync, ack) over {len(puts)} puts:"
        f" p50 {pct(puts, 0.5) * 1000:6.0f} ms  p99 {pct(puts, 0.99) * 1000:6.0f} ms"
    )
    if sent:
        sizes = [float(p.bytes) for p in sent]
        print(
            f"{'':8} {len(patches)} of {len(sent)} puts were patches; sent p50"
            f" {pct(sizes, 0.5) / 1024:8.1f} KiB, max {max(sizes) / 1024:8.1f} KiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="5,50", help="database sizes in MB, comma-separated")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="commits a second")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-standby-"))
    try:
        certs = tmp / "certs"
        certs.mkdir()
        certificates(certs)
        print(f"replica lag to a standby over TLS on 127.0.0.1, {os.cpu_count()} CPUs")
        for megabytes in (int(s) for s in args.sizes.split(",")):
            folder = tmp / f"{megabytes}mb"
            folder.mkdir()
            run(folder, certs, megabytes, args.commits, args.rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    main()
