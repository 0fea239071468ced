"""Topic names of contract v1: `{prefix}/{id}/...`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str
    locker_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.locker_id}"

    @property
    def commands(self) -> str:
        """The subscription for every command of this locker."""
        return f"{self.base}/cmd/+"

    def command_name(self, topic: str) -> str | None:
        """The command in a cmd topic of this locker, or None for any other topic."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    def event(self, type_: str) -> str:
        return f"{self.base}/event/{type_}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def heartbeat(self) -> str:
        return f"{self.base}/heartbeat"
