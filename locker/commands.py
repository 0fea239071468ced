"""The platform's commands, read and answered exactly as contract v1 says.

Transport-free: the MQTT link hands over the command name (the topic's last
segment) and the raw payload, and publishes whatever reply comes back. Every
command is answered, a bad one with an error naming the problem; a command
seen before gets the stored reply again and does not act twice, because the
reply is committed in the same transaction as the change it reports.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from locker.clock import parse_rfc3339, rfc3339
from locker.model import CommandError, ErrorCode
from locker.rules import invalid, opt_bool, req_int, req_str
from locker.service import Service
from locker.storage import StorageFull

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024
MAX_COMMAND_ID = 128
# Contract v1.1: how far a platform's clock may run ahead of the locker's.
MAX_CLOCK_SKEW_S = 60
COMMANDS = ("reserve", "cancel", "extend", "reissue_code", "open", "set_service", "sync")

Reply = dict[str, Any]


def error_reply(command_id: str | None, code: ErrorCode, message: str, result: Any = None) -> Reply:
    reply: Reply = {
        "command_id": command_id,
        "ok": False,
        "error": {"code": code.value, "message": message},
    }
    if result is not None:
        reply["result"] = result
    return reply


def _opt_str(data: Mapping[str, Any], key: str, max_len: int = 256) -> str:
    if key not in data or data[key] is None:
        return ""
    value = data[key]
    if not isinstance(value, str):
        raise invalid(key, f"expected a string, got {type(value).__name__}")
    return value[:max_len]


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if value is None:
        raise invalid(key, "missing")
    if not isinstance(value, str):
        raise invalid(key, f"expected an RFC 3339 time string, got {type(value).__name__}")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise invalid(key, f"not an RFC 3339 time with a Z suffix: {value[:40]!r}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_encodable(data: Any) -> bool:
    """Whether every string in a parsed payload, keys included, can be written as UTF-8."""
    stack = [data]
    while stack:  # not recursive: the payload may be nested as deep as the parser allows
        value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return False
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


class CommandProcessor:
    """Reads, de-duplicates, checks the age of, and runs platform commands."""

    def __init__(self, service: Service) -> None:
        self.svc = service
        self.max_age_s = service.config.mqtt.command_max_age_s
        self._handlers: dict[str, Callable[[str, Mapping[str, Any]], Reply | None]] = {
            "reserve": self._reserve,
            "cancel": self._cancel,
            "extend": self._extend,
            "reissue_code": self._reissue,
            "open": self._open,
            "set_service": self._set_service,
            "sync": self._sync,
        }

    def handle(self, name: str, payload: bytes | str) -> Reply | None:
        """Answer one command. None means the reply comes later (a remote open)."""
        if len(payload) > MAX_PAYLOAD:
            return error_reply(
                None, ErrorCode.INVALID_PAYLOAD, f"payload is larger than {MAX_PAYLOAD // 1024} KiB"
            )
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_reply(None, ErrorCode.INVALID_PAYLOAD, f"payload is not JSON: {exc}"[:200])
        except RecursionError:
            return error_reply(None, ErrorCode.INVALID_PAYLOAD, "payload is nested too deeply")
        if not isinstance(data, dict):
            return error_reply(
                None,
                ErrorCode.INVALID_PAYLOAD,
                f"payload must be a JSON object, got {type(data).__name__}",
            )
        command_id = data.get("command_id")
        if isinstance(command_id, str) and not _encodable(command_id):
            command_id = None
        if not isinstance(command_id, str) or not command_id or len(command_id) > MAX_COMMAND_ID:
            return error_reply(
                None,
                ErrorCode.INVALID_PAYLOAD,
                "command_id: missing, not a string, or longer than 128 characters",
            )
        if not _all_encodable(data):
            # JSON may escape a lone surrogate (\\ud800); Python reads it into a str that
            # neither SQLite nor the reply's UTF-8 can hold, so it stops here, answered.
            return error_reply(
                command_id,
                ErrorCode.INVALID_PAYLOAD,
                "a string is not valid Unicode (a lone surrogate)",
            )
        seen = self.svc.store.stored_reply(command_id)
        if seen is not None:
            log.info("command %s delivered again; answering with the stored reply", command_id)
            return seen[1]  # None while a remote open still waits for its door
        now = self.svc.now()
        if self.svc.store.fault is not None:
            return self._without_commits(name, command_id)
        try:
            return self._commit(name, command_id, data, now)
        except StorageFull as exc:
            if exc.released:
                # The medium filled under this very command: the reserve given back
                # lets the work in flight finish (new work is refused from now on).
                try:
                    return self._commit(name, command_id, data, now)
                except StorageFull as again:
                    exc = again
            # Nothing was done and nothing stored: delivered again, it runs afresh.
            return error_reply(command_id, ErrorCode.STORAGE_FULL, exc.message)

    def _commit(
        self, name: str, command_id: str, data: Mapping[str, Any], now: float
    ) -> Reply | None:
        with self.svc.store.transaction() as tx:
            reply = self._run(name, command_id, data, now)
            if reply is not None:
                tx.store_reply(command_id, name, reply, now)
        return reply

    def _without_commits(self, name: str, command_id: str) -> Reply:
        """While the medium refuses commits: `sync` (it changes nothing) is answered, every
        other command is refused, so the reserve's space stays for the doors and pickups."""
        if name == "sync":
            return self._ok(command_id, self.svc.snapshot())
        return error_reply(
            command_id,
            ErrorCode.STORAGE_FULL,
            "the locker cannot store anything now (its data medium is full or read-only);"
            " nothing was done, send it again later",
        )

    def _run(self, name: str, command_id: str, data: Mapping[str, Any], now: float) -> Reply | None:
        handler = self._handlers.get(name)
        if handler is None:
            return error_reply(
                command_id,
                ErrorCode.UNKNOWN_COMMAND,
                f"unknown command {name[:64]!r}; known: {', '.join(COMMANDS)}",
            )
        try:
            self._check_fresh(data, now)
            return handler(command_id, data)
        except StorageFull:
            raise  # answered by handle(), never stored
        except CommandError as exc:
            return error_reply(command_id, exc.code, exc.message, exc.result)

    def _check_fresh(self, data: Mapping[str, Any], now: float) -> None:
        """Contract v1.1: a command lives at most command_max_age_s from its sent_at.

        Without the upper bounds a command dated in the future, or one with a far
        expires_at, would stay executable long after it was meant to be: a remote
        open kept back by an outage could still fire days later.

        The age is judged on the locker's wall clock whether or not it is synchronised
        (docs/time.md): with a clock hours off, a fresh command and one held back for
        hours look alike, and executing a stale remote open is worse than refusing a
        fresh one (the platform sends it again once the clocks agree). A refusal the
        locker's clock may be to blame for says so, with the locker's time.
        """
        sent_at = _time(data, "sent_at")
        if sent_at - now > MAX_CLOCK_SKEW_S:
            raise self._stale(
                now,
                f"sent_at lies more than {MAX_CLOCK_SKEW_S} s in the future; not executed"
                " (check the platform's and the locker's clocks)",
            )
        if "expires_at" in data and data["expires_at"] is not None:
            expires_at = _time(data, "expires_at")
            if expires_at - sent_at > self.max_age_s:
                raise CommandError(
                    ErrorCode.COMMAND_EXPIRED,
                    f"expires_at lies more than {self.max_age_s} s after sent_at; not executed",
                )
            if now > expires_at:
                raise self._stale(now, "command arrived after its expires_at; not executed")
        elif now - sent_at > self.max_age_s:
            raise self._stale(
                now, f"command is older than {self.max_age_s} s (sent_at); not executed"
            )

    def _stale(self, now: float, message: str) -> CommandError:
        """COMMAND_EXPIRED judged on the locker's clock, with that clock's time and state."""
        synced = self.svc.clock.synchronised()
        if synced is False:
            message += "; the locker's clock is not synchronised (NTP), so its time may be wrong"
        result: dict[str, object] = {"locker_time": rfc3339(now), "clock_synchronised": synced}
        return CommandError(ErrorCode.COMMAND_EXPIRED, message, result)

    @staticmethod
    def _ok(command_id: str, result: Any) -> Reply:
        return {"command_id": command_id, "ok": True, "result": result}

    def _reserve(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        return self._ok(command_id, self.svc.reserve(data))

    def _cancel(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        order_id = req_str(data, "order_id", max_len=64)
        return self._ok(command_id, self.svc.cancel(order_id, _opt_str(data, "reason")))

    def _extend(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        order_id = req_str(data, "order_id", max_len=64)
        until = _time(data, "pickup_until")
        return self._ok(command_id, self.svc.extend(order_id, until))

    def _reissue(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        order_id = req_str(data, "order_id", max_len=64)
        return self._ok(command_id, self.svc.reissue_code(order_id))

    def _open(self, command_id: str, data: Mapping[str, Any]) -> Reply | None:
        number = req_int(data, "compartment")
        self.svc.remote_open(
            number, _opt_str(data, "reason"), _opt_str(data, "operator", 64), command_id
        )
        return None

    def _set_service(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        number = req_int(data, "compartment")
        if "in_service" not in data:
            raise invalid("in_service", "missing")
        in_service = opt_bool(data, "in_service", True)
        return self._ok(
            command_id, self.svc.set_service(number, in_service, _opt_str(data, "reason"))
        )

    def _sync(self, command_id: str, data: Mapping[str, Any]) -> Reply:
        return self._ok(command_id, self.svc.snapshot())
