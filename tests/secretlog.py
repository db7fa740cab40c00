"""Every log record of a test run, kept in a file, and the secrets the run used, to check against it.

The issue's promise "never log a key, token, password or upstream secret" is checked here on the
whole suite: all records of all loggers at DEBUG are written to one file (raw, before the
serving handler's masking, so code that logs a secret is caught even when the mask would hide
it), and at the end of the session no secret the tests used may appear in it. The secrets are the
fixed ones (fake upstream keys, fake Stripe keys, the admin's TOTP secret, the factories'
password) and every API key plaintext and password issued while the tests ran.
"""
import logging
import logging.config
import threading
from pathlib import Path

from argon2 import PasswordHasher

MIN_SECRET_LENGTH = 8  # shorter "passwords" (a form's too-short example) are not secrets worth the name


class SecretLog:
    def __init__(self, path: Path):
        self.path = path
        self.secrets: set[str] = set()
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", errors="backslashreplace")
        self._formatter = logging.Formatter("%(message)s")

    def remember(self, secret) -> None:
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
            self.secrets.add(secret)

    def write(self, record: logging.LogRecord) -> None:
        try:
            text = self._formatter.format(record)
        except Exception:  # a bad format string is the caller's bug, not a reason to lose the record
            text = f"{record.msg!r} {record.args!r}"
        line = text.replace("\\", "\\\\").replace("\n", "\\n")  # one record per line, its logger first
        with self._lock:
            self._file.write(f"{record.name}\t{line}\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def leaks(self) -> dict[str, int]:
        """Logger name -> how many of its records held a secret (the secrets themselves are not said)."""
        found: dict[str, int] = {}
        escaped = {secret: secret.replace("\\", "\\\\") for secret in self.secrets}
        with open(self.path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                name, _, text = line.partition("\t")
                if any(secret in text for secret in escaped.values()):
                    found[name] = found.get(name, 0) + 1
        return found


def recording_hasher(log: SecretLog, **parameters) -> PasswordHasher:
    """A PasswordHasher that remembers every password it hashes (so every password a test set)."""

    class Recording(PasswordHasher):
        def hash(self, password, *, salt=None):
            log.remember(password)
            return super().hash(password, salt=salt)

    return Recording(**parameters)


def capture_all(log: SecretLog):
    """Send every record of every logger, at DEBUG, to `log`; return a function that undoes it.

    Hooked into Logger.callHandlers, not added as a handler: alembic's fileConfig (every
    migration run) replaces the root logger's handlers and sets its level back to WARNING.
    """
    original_call, original_file_config = logging.Logger.callHandlers, logging.config.fileConfig
    root = logging.getLogger()
    levels = {"": root.level, "sqlalchemy": logging.getLogger("sqlalchemy").level}

    def call_handlers(self, record):
        log.write(record)
        original_call(self, record)

    def file_config(*args, **kwargs):
        original_file_config(*args, **kwargs)
        for handler in root.handlers:  # alembic's console handler: only what it showed before
            if handler.level == logging.NOTSET:
                handler.setLevel(logging.WARNING)
        root.setLevel(logging.DEBUG)

    logging.Logger.callHandlers = call_handlers
    logging.config.fileConfig = file_config
    root.setLevel(logging.DEBUG)
    # SQL echo is off in production too (portal/logs.py); its parameters are stored values, not logs.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)

    def undo():
        logging.Logger.callHandlers = original_call
        logging.config.fileConfig = original_file_config
        root.setLevel(levels[""])
        logging.getLogger("sqlalchemy").setLevel(levels["sqlalchemy"])
    return undo
