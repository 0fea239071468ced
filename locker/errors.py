"""The exception family of the domain layer."""


class LockerError(Exception):
    """Base of every error the locker raises on purpose."""
