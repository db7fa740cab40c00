"""A fast local streaming upstream for the load harness: OpenAI chat-completion chunks, each stamped.

Run in a process of its own: `python -m bench.sse_upstream --port PORT`. The gateway calls
{base_url}/chat/completions, so the base URL chooses how to stream:

  http://127.0.0.1:PORT/chunked/20/5000/v1   20 content events 5,000 us apart, Transfer-Encoding: chunked
  http://127.0.0.1:PORT/close/20/5000/v1     the same, close-delimited (no length, no chunks: the body ends at close)
  http://127.0.0.1:PORT/held/0/2000000/v1    chunked, one event every 2 s until POST /control/release

Every chunk carries "sent_ns": time.monotonic_ns() read just before it is written. CLOCK_MONOTONIC
is system-wide on Linux, so a client process on the machine subtracts it from its own clock to get
how long the event took to reach it. The stream ends as OpenAI ends one asked for its usage: a
chunk with the finish reason, one with the usage, then [DONE].

GET /control/stats answers {"open": streams being sent, "held": held streams open, "served": streams ended};
POST /control/release ends every held stream (and any started later); POST /control/reset undoes that.
"""
import argparse
import asyncio
import json
import time

CREATED = 1764300000
PROMPT_TOKENS = 57


class Upstream:
    def __init__(self):
        self.open = self.held = self.served = 0
        self.released = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if not await self.respond(method, target.split("?", 1)[0], body, writer):
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection may carry another."""
        if path == "/control/stats":
            return await self.plain(writer, 200, {"open": self.open, "held": self.held, "served": self.served})
        if path == "/control/release" and method == "POST":
            self.released.set()
            return await self.plain(writer, 200, {"released": True})
        if path == "/control/reset" and method == "POST":
            self.released.clear()
            return await self.plain(writer, 200, {"released": False})
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 6 or parts[0] not in ("chunked", "close", "held") \
                or parts[3:] != ["v1", "chat", "completions"]:
            return await self.plain(writer, 404, {"error": {"message": f"no such path: {path}"}})
        framing, events, gap_us = parts[0], int(parts[1]), int(parts[2])
        request = json.loads(body or b"{}")
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or 16
        return await self.stream(writer, framing, events, gap_us / 1e6, request.get("model", "bench"), limit)

    async def plain(self, writer: asyncio.StreamWriter, status: int, document: dict) -> bool:
        payload = json.dumps(document).encode()
        writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
        return True

    async def stream(self, writer, framing: str, events: int, gap: float, model: str, limit: int) -> bool:
        chunked = framing != "close"
        held = framing == "held"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Connection: close\r\n\r\n"))

        def send(document) -> None:
            if isinstance(document, dict):
                document["sent_ns"] = time.monotonic_ns()
                payload = b"data: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n"
            else:
                payload = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(payload), payload) if chunked else payload)

        def chunk(delta: dict, finish=None) -> dict:
            return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self.open += 1
        self.held += held
        sent = 0
        try:
            while (sent < events) if not held else not self.released.is_set():
                if sent:
                    if held:
                        try:
                            await asyncio.wait_for(self.released.wait(), gap)
                            break
                        except asyncio.TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(gap)
                send(chunk({"role": "assistant", "content": "word "} if not sent else {"content": "word "}))
                sent += 1
                await writer.drain()
            send(chunk({}, "stop"))
            tokens = min(sent, limit)
            send({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model,
                  "choices": [], "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": tokens,
                                           "total_tokens": PROMPT_TOKENS + tokens}})
            send("[DONE]")
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            self.served += 1
        finally:
            self.open -= 1
            self.held -= held
        return chunked


async def serve(port: int) -> None:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
