"""A streaming client for the load harness, in a process of its own: reads SSE events and times them.

  python -m bench.stream_client timed --url URL --body-file F [--key K] --count N
      N streams one after another, on one keep-alive connection while the server allows it. Prints
      one JSON object: for each stream its status, the time from sending the request to the first
      event, and each event's relay delay: its arrival here minus the "sent_ns" the upstream
      stamped it with (bench/sse_upstream.py; CLOCK_MONOTONIC is one clock for the whole machine).

  python -m bench.stream_client held --url URL --body-file F [--key K] --count N [--opening 64]
      N streams at once (at most `opening` of them being opened at a time). Prints a JSON line of
      counts every half second and a last one when every stream has ended.

Times are taken when a read returns, so they include this process's own event-loop delay; the
harness measures the upstream directly with the same client, so the difference is the gateway's.
"""
import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Callable, Optional
from urllib.parse import urlsplit

READ_SIZE = 65536


class Closed(Exception):
    """The server closed the connection before the response ended."""


class Connection:
    """One HTTP/1.1 connection, reading a response's body as it arrives."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def ensure(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes, on_data: Callable[[bytes, int], None]) -> int:
        """Send `request`; hand each piece of the body to on_data(bytes, arrival monotonic_ns); the status.

        Leaves the connection open when the response allows another request on it.
        """
        await self.ensure()
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.close()
            raise Closed("closed before the response's headers") from None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip().lower()
        keep = headers.get("connection") != "close"
        if headers.get("transfer-encoding") == "chunked":
            await self._chunked(on_data)
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left:
                data = await self.reader.read(min(left, READ_SIZE))
                if not data:
                    self.close()
                    raise Closed("closed inside a body of known length")
                left -= len(data)
                on_data(data, time.monotonic_ns())
        else:  # close-delimited
            keep = False
            while data := await self.reader.read(READ_SIZE):
                on_data(data, time.monotonic_ns())
        if not keep:
            self.close()
        return status

    async def _chunked(self, on_data) -> None:
        reader = self.reader
        try:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers are sent here
                    return
                left = size
                while left:
                    data = await reader.read(min(left, READ_SIZE))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    on_data(data, time.monotonic_ns())
                await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            self.close()
            raise Closed("closed inside a chunked body") from None


class Events:
    """Splits a body into SSE events; records each data event's arrival and its upstream stamp."""

    def __init__(self):
        self.buffer = b""
        self.arrivals: list[int] = []     # monotonic_ns at which each event was read
        self.delays_ns: list[int] = []    # arrival minus sent_ns, for events that carry the stamp
        self.done = False

    def feed(self, data: bytes, arrival: int) -> None:
        self.buffer += data.replace(b"\r\n", b"\n")
        while (end := self.buffer.find(b"\n\n")) >= 0:
            event, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                self.arrivals.append(arrival)
                if payload == b"[DONE]":
                    self.done = True
                    continue
                try:
                    sent = json.loads(payload).get("sent_ns")
                except ValueError:
                    sent = None
                if isinstance(sent, int):
                    self.delays_ns.append(arrival - sent)


def request_bytes(url: str, body: bytes, key: Optional[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            "Accept: text/event-stream", f"Content-Length: {len(body)}"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return parts.hostname, parts.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def timed(url: str, body: bytes, key: Optional[str], count: int) -> dict:
    host, port, request = request_bytes(url, body, key)
    connection = Connection(host, port)
    streams = []
    for _ in range(count):
        events = Events()
        await connection.ensure()  # a new connection is not part of the time measured
        started = time.monotonic_ns()
        try:
            status = await connection.exchange(request, events.feed)
            error = None
        except (Closed, ConnectionError) as exc:
            status, error = 0, str(exc)
            connection.close()
        streams.append({
            "status": status, "error": error, "done": events.done, "events": len(events.arrivals),
            "first_us": (events.arrivals[0] - started) / 1000 if events.arrivals else None,
            "delays_us": [d / 1000 for d in events.delays_ns],
        })
    connection.close()
    return {"streams": streams}


async def held(url: str, body: bytes, key: Optional[str], count: int, opening: int, timeout: float) -> None:
    host, port, request = request_bytes(url, body, key)
    counts = Counter()
    statuses = Counter()
    errors = Counter()
    gate = asyncio.Semaphore(opening)
    started = time.monotonic()

    def report(final: bool = False) -> None:
        line = {"t": round(time.monotonic() - started, 2), "asked": count, "opening": counts["opening"],
                "open": counts["open"], "ended": counts["ended"], "failed": counts["failed"],
                "opened": counts["opened"], "statuses": dict(statuses), "errors": dict(errors), "final": final}
        print(json.dumps(line), flush=True)

    async def one() -> None:
        connection = Connection(host, port)
        state = "opening"
        counts[state] += 1
        await gate.acquire()
        released = False
        events = Events()

        def move(to: str) -> None:
            nonlocal state
            counts[state] -= 1
            state = to
            counts[state] += 1

        def on_data(data: bytes, arrival: int) -> None:
            nonlocal released
            events.feed(data, arrival)
            if state == "opening" and events.arrivals:
                move("open")
                counts["opened"] += 1
                gate.release()
                released = True

        try:
            status = await connection.exchange(request, on_data)
            statuses[str(status)] += 1
            move("ended" if status == 200 and events.done else "failed")
        except (Closed, ConnectionError, OSError) as exc:
            errors[type(exc).__name__] += 1
            move("failed")
        finally:
            if not released:
                gate.release()
            connection.close()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.5)
            report()

    tick = asyncio.create_task(ticker())
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    tick.cancel()
    if pending:
        errors["harness timeout"] += len(pending)
    report(final=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("timed", "held"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--key")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--opening", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600.0, help="held: give up on streams after this long")
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    if args.mode == "timed":
        json.dump(asyncio.run(timed(args.url, body, args.key, args.count)), sys.stdout)
    else:
        asyncio.run(held(args.url, body, args.key, args.count, args.opening, args.timeout))


if __name__ == "__main__":
    main()
