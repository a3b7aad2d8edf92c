"""Failure classes that decide what the runner does with an input it could not process."""


class PermanentError(Exception):
    """Retrying cannot help (bad event, bad data): dead-letter the input at once.

    ``reason`` is a short stable code (``schema-invalid``, ``checksum-mismatch``...) that operators
    filter on; the message says what was wrong in words.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransientError(Exception):
    """The world may heal (store or broker unavailable): retry with backoff, then dead-letter."""


class DecodeError(PermanentError):
    """A Kafka record is not a valid event of a type the consumer declared."""
