"""The exception family of the domain layer."""


class LockerError(Exception):
    """Base of every error the locker raises on purpose."""


class Fenced(LockerError):
    """A newer controller (a higher epoch) serves this locker: this one must not."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
