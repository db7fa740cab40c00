"""The load harness's upstreams on loopback: Debian's nginx for complete answers, an asyncio server for streams.

nginx answers every request with the same canned chat completion (about 300 bytes, with a usage
object), from memory, with keep-alive: what an upstream costs is then nearly nothing, and the same
whether wrk calls it directly or through the gateway. bench/sse_upstream.py streams.
"""
import grp
import json
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Optional

import requests

from .procs import Processes, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

COMPLETION = {
    "id": "chatcmpl-bench0001", "object": "chat.completion", "created": 1764300000, "model": "bench-upstream",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! A canned answer, as long as a "
                                         "short reply."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 57, "completion_tokens": 21, "total_tokens": 78},
}
COMPLETION_BYTES = json.dumps(COMPLETION, separators=(",", ":"))

NGINX_CONF = """\
daemon off;
worker_processes 1;
%(user)s
pid %(folder)s/nginx.pid;
error_log %(folder)s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %(folder)s/body;
    proxy_temp_path %(folder)s/proxy;
    fastcgi_temp_path %(folder)s/fastcgi;
    uwsgi_temp_path %(folder)s/uwsgi;
    scgi_temp_path %(folder)s/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        location / {
            default_type application/json;
            return 200 '%(answer)s';
        }
    }
}
"""


def nginx_binary() -> Optional[str]:
    """This machine's nginx (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


class Nginx:
    """nginx on a free loopback port answering the canned completion; `url` is its OpenAI-style base URL."""

    def __init__(self, processes: Processes, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # As root, workers would run as `nobody`, who cannot enter the harness's temporary folder.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};" if os.getuid() == 0 else ""
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF % {"user": user, "folder": folder, "port": self.port, "answer": COMPLETION_BYTES.replace("'", "\\'")})
        self.process = processes.start("nginx", [nginx_binary(), "-e", str(folder / "error.log"), "-p", str(folder),
                                                 "-c", str(conf)])
        wait_for_port(self.port, 15, self.process)
        self.url = f"http://127.0.0.1:{self.port}/v1"


class SseUpstream:
    """bench/sse_upstream.py in its own process; `base_url(framing, events, gap_us)` names a way to stream."""

    def __init__(self, processes: Processes):
        self.port = free_port()
        self.process = processes.start("sse-upstream", [sys.executable, "-m", "bench.sse_upstream", "--port",
                                                        str(self.port)], cwd=ROOT)
        wait_for_port(self.port, 15, self.process)
        self.url = f"http://127.0.0.1:{self.port}"

    def base_url(self, framing: str, events: int, gap_us: int) -> str:
        return f"{self.url}/{framing}/{events}/{gap_us}/v1"

    def control(self, action: str) -> dict:
        """POST /control/release or /control/reset, or GET /control/stats."""
        method = requests.get if action == "stats" else requests.post
        return method(f"{self.url}/control/{action}", timeout=10).json()
