"""One named hub for what happens inside lockerd, for whoever must hear of it.

Each kind of event is a `Topic` with its own payload dataclass: a publisher does not
know its subscribers, and the composition root (`locker.daemon.build`, the tests'
fixtures) is the one place that subscribes them, so a reader finds every wire in one
spot instead of in constructors. Everything runs on the loop's thread; a subscriber
that fails is logged and the others still hear of the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from locker.model import CodeResult, Method, Purpose

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Committed:
    """A transaction that changed something has committed; the types of the events it put
    in the outbox (empty: a change with no event, such as a door reading)."""

    event_types: tuple[str, ...]


@dataclass(frozen=True)
class CommandAnswered:
    """The late reply of a pending command (a remote open) is stored and may go out."""

    command_id: str
    reply: dict[str, Any]


@dataclass(frozen=True)
class UnlockSent:
    """An unlock pulse went to this board: its doors are worth reading soon."""

    board: str


@dataclass(frozen=True)
class CodeEntered:
    """A code came in from the scanner or the camera (the screen shows its result)."""

    method: Method
    result: CodeResult


@dataclass(frozen=True)
class PhaseDone:
    """Every door of an order's phase was seen open, then closed, and it committed."""

    order_id: str
    purpose: Purpose
    compartments: tuple[int, ...]


@dataclass(frozen=True)
class LoopTurn:
    """The loop finished a turn (periodic work of adapters: state, heartbeat)."""

    monotonic: float


class Topic(Generic[T]):
    """One kind of event: subscribe to it, publish it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Callable[[T], None]] = []

    def subscribe(self, subscriber: Callable[[T], None]) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Callable[[T], None]) -> None:
        self._subscribers.remove(subscriber)

    def publish(self, event: T) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                # One broken screen or link must not keep the rest from hearing of it.
                log.exception("%s subscriber %r failed", self.name, subscriber)


class Events:
    """The hub of one locker."""

    def __init__(self) -> None:
        self.committed: Topic[Committed] = Topic("committed")
        self.command_answered: Topic[CommandAnswered] = Topic("command_answered")
        self.unlock_sent: Topic[UnlockSent] = Topic("unlock_sent")
        self.code_entered: Topic[CodeEntered] = Topic("code_entered")
        self.phase_done: Topic[PhaseDone] = Topic("phase_done")
        self.loop_turn: Topic[LoopTurn] = Topic("loop_turn")
