"""Upstream adapters, one per wire protocol, all returning an `UpstreamResponse`."""
from dataclasses import dataclass
from typing import Iterator, Optional, Protocol


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or stopped answering; `timeout` says which."""

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class UpstreamResponse(Protocol):
    status: int
    content_type: str

    def chunks(self) -> Iterator[bytes]:
        """Body bytes as they arrive; raises UpstreamUnavailable on a broken or idle connection."""

    def read(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (UpstreamUnavailable beyond or on failure)."""

    def close(self) -> None:
        """Stop reading and give the connection up."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect, to the response headers, and of silence between two reads."""

    connect: float
    first_byte: float
    idle: float


def query_suffix(query: Optional[str]) -> str:
    return f"?{query}" if query else ""
