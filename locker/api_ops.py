"""The local API's requests: one function an op, each run on the daemon's loop with the
API's context (the service, the maintenance sessions, health and diagnostics) and the
request's fields; `OPS` maps an op's name to its function. The socket, the lines and the
stream are `locker/api.py`'s, which hands each op its `Context`."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locker.clock import rfc3339
from locker.errors import LockerError
from locker.model import CodeResult, Method
from locker.pin import read_pin_hash
from locker.recovery import BackupJobs, make_backup
from locker.service import Service
from locker.storage import SECRET_FIELDS

SESSION_S = 300.0  # a maintenance session ends after five minutes without a request
READ_LIMIT = 1000  # entries one `events` or `audit` request returns at most


@dataclass(frozen=True)
class Context:
    """What an op may use: the service, the technicians' sessions (token -> expiry on the
    service's monotonic clock), the API's health and diagnostics views, and the backups
    being made."""

    svc: Service
    sessions: dict[str, float]
    health: Callable[[], dict[str, Any]]
    diagnostics: Callable[[], dict[str, Any]]
    backups: BackupJobs = field(default_factory=BackupJobs)


class ApiError(Exception):
    """A request the API refuses; the message goes back to the client, with `fields`
    (machine-readable details such as `code` or `refusal`) beside it."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


def _code(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    text, method = req.get("text"), req.get("method", "keypad")
    if not isinstance(text, str):
        raise ApiError("text: expected the code as a string")
    # The kiosk's own inputs: its keypad and a scanner that types into it. The camera is
    # lockerd's own device; a client naming it would get one more terminal's attempts
    # and waits (an attack: rotating the terminal between requests).
    if method not in ("keypad", "scanner"):
        raise ApiError("method: expected keypad or scanner")
    staff = req.get("staff", False)
    if not isinstance(staff, bool):
        raise ApiError("staff: expected true or false")
    # The kiosk shows this reply itself: no stream line for it. The staff screen's codes
    # are judged by their own throttle (deposit codes only), which shoppers cannot block.
    return code_result(api.svc.enter_code(text, Method(method), notify=False, staff=staff))


def code_result(r: CodeResult) -> dict[str, Any]:
    return {
        "outcome": r.outcome,
        "message": r.message,
        "purpose": r.purpose,
        "compartments": list(r.compartments),
        "attempts_left": r.attempts_left,
        "wait_s": r.wait_s,
        "reason": r.reason,
        # Staff see which order they are loading; a shopper's result never names one.
        "order_id": r.order_id if r.purpose in ("deposit", "retrieval") else None,
    }


def _history(api: Context, req: dict[str, Any]) -> Any:
    order_id = req.get("order_id")
    if not isinstance(order_id, str):
        raise ApiError("order_id: expected a string")
    return api.svc.history(order_id)


def _limit(req: dict[str, Any]) -> int:
    limit = req.get("limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= READ_LIMIT:
        raise ApiError(f"limit: expected a whole number from 1 to {READ_LIMIT}")
    return limit


def _events(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """The newest events still waiting for the platform, codes masked: the socket is open
    to the whole locker group, and a code shown on a terminal is a code given away."""
    limit = _limit(req)
    store, locker_id = api.svc.store, api.svc.config.locker.id
    recorded = store.last_seq()
    events = [
        {k: ("****" if k in SECRET_FIELDS else v) for k, v in ev.payload(locker_id).items()}
        for ev in store.events(after_seq=max(0, recorded - limit), limit=limit)
    ]
    # The outbox forgets an event on the broker's PUBACK: beside the waiting ones, how
    # many were recorded in all, so an empty list does not read as "nothing happened".
    return {"events": events, "waiting": store.outbox_depth(), "recorded": recorded}


def _audit(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """The last `limit` audit entries, oldest first (the audit log holds no code)."""
    rows = api.svc.store.audit_entries(_limit(req))
    return {"entries": [{**r.as_dict(), "at": rfc3339(r.at)} for r in reversed(rows)]}


def _technician(api: Context, req: dict[str, Any]) -> None:
    """Maintenance actions need the technician PIN (hashed on disk, wrong ones throttled),
    or the token of a session opened with it (`login`)."""
    token = req.get("token")
    if isinstance(token, str):
        now = api.svc.clock.monotonic()
        for known, expires in list(api.sessions.items()):
            if expires < now:
                del api.sessions[known]
            elif hmac.compare_digest(known, token):
                api.sessions[known] = now + SESSION_S
                return
        raise ApiError("token: the maintenance session has ended; enter the PIN again")
    pin = req.get("pin")
    if not isinstance(pin, str):
        raise ApiError("pin: the technician PIN is required for this action")
    refused = api.svc.entry.check_pin(pin, read_pin_hash(api.svc.config.pin_path))
    if refused is not None:
        # Beside the sentence, what the maintenance screen needs to say it in its language.
        refusal = {
            "outcome": refused.outcome,  # wrong | throttled | refused
            "attempts_left": refused.attempts_left,
            "wait_s": refused.wait_s,
            "reason": refused.reason,
        }
        raise ApiError(refused.message, refusal=refusal)


def _login(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(req.get("pin"), str):
        raise ApiError("pin: the technician PIN is required to log in")
    _technician(api, {"pin": req["pin"]})
    token = secrets.token_hex(16)
    api.sessions[token] = api.svc.clock.monotonic() + SESSION_S
    api.svc.audit_action("technician", "maintenance_login")
    return {"token": token, "expires_in_s": SESSION_S}


def _logout(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    token = req.get("token")
    ended = isinstance(token, str) and api.sessions.pop(token, None) is not None
    return {"ended": ended}


def _diagnostics(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    return api.diagnostics()


def _reissue(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """A new pickup code for a loaded order (the old one stops working, the platform is
    told by `code_issued`): how a technician prints a QR for a customer at the locker."""
    _technician(api, req)
    order_id = req.get("order_id")
    if not isinstance(order_id, str):
        raise ApiError("order_id: expected a string")
    return api.svc.reissue_code(order_id, actor="technician")


def _compartment(api: Context, req: dict[str, Any]) -> int:
    number = req.get("compartment")
    if (
        isinstance(number, bool)
        or not isinstance(number, int)
        or (number not in api.svc.compartments)
    ):
        raise ApiError(f"compartment: this locker has no compartment {number!r}")
    return number


def _test_open(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    number = _compartment(api, req)
    api.svc.maintenance_open(number, "technician")
    return {"compartment": number}


def _open_all(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    numbers = sorted(api.svc.compartments)
    for number in numbers:  # each one logged; only here and in lockerctl, never remotely
        api.svc.maintenance_open(number, "technician:open_all")
    return {"compartments": numbers}


def _set_service(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    number = _compartment(api, req)
    in_service = req.get("in_service")
    if not isinstance(in_service, bool):
        raise ApiError("in_service: expected true or false")
    reason = req.get("reason") if isinstance(req.get("reason"), str) else "maintenance"
    return api.svc.set_service(number, in_service, str(reason), actor="technician")


def _backup(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Start a backup of the live database to `path` (technician PIN: the copy holds the
    code hashes). The copy runs in a thread of its own and this answers at once with a
    token: an op answers only from the loop, and the loop must never wait on a slow
    medium. `backup_status` with the token says when it is done, and how it went."""
    _technician(api, req)
    path = req.get("path")
    if not isinstance(path, str) or not path or not Path(path).is_absolute():
        raise ApiError("path: expected an absolute path (a directory or a new file)")
    config, now = api.svc.config, api.svc.now()
    source, data_dir, locker_id = api.svc.store.path, config.locker.data_dir, config.locker.id
    token = secrets.token_hex(16)
    try:
        # Even whether `path` exists is the thread's to ask: a stat can hang on a bad stick.
        api.backups.start(token, lambda: make_backup(source, Path(path), data_dir, locker_id, now))
    except LockerError as exc:
        raise ApiError(str(exc)) from None
    api.svc.audit_action("technician", "backup", detail=path)
    return {"backup": token, "done": False}


def _backup_status(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """How the backup `backup` (the token `backup` answered) is going: done or not, and
    once done the copy's path, size and facts, or why it failed."""
    token = req.get("backup")
    if not isinstance(token, str):
        raise ApiError("backup: expected the token the backup op answered")
    try:
        verdict = api.backups.result(token)
    except LockerError as exc:
        raise ApiError(str(exc)) from None
    if verdict is None:
        return {"backup": token, "done": False}
    return {"backup": token, "done": True, **verdict.as_dict()}


def _snapshot(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    return api.svc.snapshot()


def _health(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    return api.health()


def _layout(api: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Where each compartment is on the cabinet (`[cabinet]`): the kiosk draws its door
    map and maintenance grid from it, and reads no configuration of lockerd's itself."""
    return api.svc.config.layout.as_dict()


OPS: dict[str, Callable[[Context, dict[str, Any]], Any]] = {
    "login": _login,
    "logout": _logout,
    "diagnostics": _diagnostics,
    "reissue_code": _reissue,
    "test_open": _test_open,
    "open_all": _open_all,
    "set_service": _set_service,
    "code": _code,
    "snapshot": _snapshot,
    "history": _history,
    "events": _events,
    "audit": _audit,
    "health": _health,
    "layout": _layout,
    "backup": _backup,
    "backup_status": _backup_status,
}
