"""Names shared by the whole domain: sizes, states, terminals and the errors of the contract."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from locker.errors import LockerError

SIZES = ("S", "M", "L")
ITEM_SIZES = ("S", "M", "L", "XL")
SIZE_RANK = {"S": 1, "M": 2, "L": 3, "XL": 4}


@dataclass(frozen=True)
class Compartment:
    """Static facts of a compartment, from the configuration."""

    number: int
    size: str
    low: bool
    board: str
    channel: int


class CompartmentState(StrEnum):
    FREE = "free"
    RESERVED = "reserved"
    LOADED = "loaded"
    RETRIEVAL = "retrieval"
    OUT_OF_SERVICE = "out_of_service"
    FAULT = "fault"


class OrderState(StrEnum):
    RESERVED = "reserved"
    LOADED = "loaded"
    COLLECTED = "collected"
    LAPSED = "lapsed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    RETRIEVED = "retrieved"


# Audit actions that are alarms: a warning in the journal, the maintenance screen's list.
ALARM_ACTIONS = (
    "door_forced",
    "door_left_open",
    "door_jammed",
    "board_offline",
    "device_offline",
    "code_attempts_throttled",
)

# "Active reservation" in the contract's ORDER_EXISTS sense.
ACTIVE_STATES = (OrderState.RESERVED, OrderState.LOADED)


class Door(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class Method(StrEnum):
    """Where a code or an open request came from (the contract's `method`, the audit's actor)."""

    KEYPAD = "keypad"
    SCANNER = "scanner"
    CAMERA = "camera"
    REMOTE = "remote"


class Component(StrEnum):
    """What a `fault` event is about (contract v1.1 lists exactly these); a board's
    name and the compartments affected go in fields of their own."""

    BOARD = "board"  # a board stopped answering, or a lock on it failed repeatedly
    SCANNER = "scanner"
    CAMERA = "camera"
    STORAGE = "storage"
    REPLICA = "replica"


class Purpose(StrEnum):
    """Why doors are being opened."""

    DEPOSIT = "deposit"
    PICKUP = "pickup"
    RETRIEVAL = "retrieval"
    REMOTE = "remote"
    MAINTENANCE = "maintenance"


class ErrorCode(StrEnum):
    """Reply error codes of contract v1 (and the few this project adds)."""

    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    COMMAND_EXPIRED = "COMMAND_EXPIRED"
    FRESH_NOT_ALLOWED = "FRESH_NOT_ALLOWED"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
    OVERSIZE = "OVERSIZE"
    TOO_MANY_PARCELS = "TOO_MANY_PARCELS"
    ORDER_EXISTS = "ORDER_EXISTS"
    NO_COMPARTMENT_AVAILABLE = "NO_COMPARTMENT_AVAILABLE"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ALREADY_COLLECTED = "ALREADY_COLLECTED"
    DOOR_JAMMED = "DOOR_JAMMED"
    BOARD_OFFLINE = "BOARD_OFFLINE"
    UNKNOWN_COMPARTMENT = "UNKNOWN_COMPARTMENT"
    RATE_LIMITED = "RATE_LIMITED"
    # Added by this project (the contract allows additions):
    ORDER_NOT_LOADED = "ORDER_NOT_LOADED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Contract v1.1: the data medium is full or read-only; nothing was done.
    STORAGE_FULL = "STORAGE_FULL"


class CommandError(LockerError):
    """A use case refused: carries the contract's error code and a message for people."""

    def __init__(
        self, code: ErrorCode, message: str, result: dict[str, object] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.result = result


class CodeKind(StrEnum):
    """What a code opens: the compartments for staff (loading, retrieval) or for the shopper."""

    DEPOSIT = "deposit"
    PICKUP = "pickup"


class OpeningState(StrEnum):
    """An unlock intent: waiting for its doors, or how it ended."""

    ACTIVE = "active"
    DONE = "done"  # every door seen open, then closed
    FAILED = "failed"  # a door never opened (jammed, board offline, restart)
    ABANDONED = "abandoned"  # its order moved on (lapse, expiry, cancel)


class DoorOutcome(StrEnum):
    """What became of one door of an opening."""

    OPENED = "opened"
    JAMMED = "jammed"
    BOARD_OFFLINE = "board_offline"
    INTERRUPTED = "interrupted"  # the locker restarted before it was seen open


# Outcomes that settle a door that was never seen open.
UNOPENED = (DoorOutcome.JAMMED, DoorOutcome.BOARD_OFFLINE, DoorOutcome.INTERRUPTED)


class AlarmKind(StrEnum):
    """The contract's `door_alarm` kinds."""

    FORCED = "forced"
    LEFT_OPEN = "left_open"
    JAMMED = "jammed"


class EntryOutcome(StrEnum):
    """What a terminal shows after a code was entered."""

    OPENED = "opened"
    WRONG = "wrong"
    THROTTLED = "throttled"
    REFUSED = "refused"
    DOOR_FAILED = "door_failed"


ALREADY_OPEN = "compartment already open"


@dataclass(frozen=True)
class CodeResult:
    """What a terminal shows after a code was entered."""

    outcome: EntryOutcome
    message: str
    purpose: str | None = None
    order_id: str | None = None
    compartments: tuple[int, ...] = ()
    attempts_left: int | None = None
    wait_s: float = 0.0
    # Why a code was refused, for the screen to pick its text: other_locker, not_a_code,
    # already_loaded, not_now (None for a plain wrong code).
    reason: str | None = None

    def summary(self) -> str:
        """One journal line: what the code led to, as far as it is known now (the door's
        own outcome is logged when it is seen), never the code itself."""
        if self.outcome != EntryOutcome.OPENED:
            return f"{self.outcome} ({self.message})"
        numbers = ", ".join(map(str, self.compartments))
        done = "already open" if self.message == ALREADY_OPEN else "unlock sent"
        return f"{self.purpose} code of order {self.order_id}: compartment {numbers} {done}"
