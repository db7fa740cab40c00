"""Server-sent events: split a byte stream into whole events and read their name and data."""
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")
_LINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    name: Optional[str]
    data: str

    def json(self) -> Any:
        """The data as JSON, or None when it is not JSON (e.g. "[DONE]")."""
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class Splitter:
    """Accumulates bytes and hands back each complete event, separator included, byte for byte."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events = []
        while True:
            cut = -1
            for separator in _SEPARATORS:
                at = self._buffer.find(separator)
                if at != -1 and (cut == -1 or at + len(separator) < cut):
                    cut = at + len(separator)
            if cut == -1:
                return events
            events.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def rest(self) -> bytes:
        """Whatever trailed the last separator (a stream that ended mid-event)."""
        rest, self._buffer = self._buffer, b""
        return rest


def parse(raw: bytes) -> Event:
    name = None
    data = []
    # Lines end at CR, LF or CRLF only (the SSE spec): str.splitlines() would also cut the data at
    # U+2028, U+2029 and U+0085, which JSON carries unescaped inside strings.
    for line in _LINES.split(raw.decode("utf-8", "replace")):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    return Event(name, "\n".join(data))
