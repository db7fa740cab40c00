"""deploy/nginx.conf as shipped, run in this machine's nginx in front of two serving processes.

The include goes into a throwaway nginx.conf (pid, logs and temp folders in the test's tmp
folder, free high ports). Only what ties it to a machine is replaced, and each replacement must
find its text, so a change to the shipped file cannot silently leave the test checking something
else: the upstream block's server (two `flask serve` processes, WORKERS=1, on the test's Postgres
and Redis), the listen ports, and the certificate (self-signed here, for the shipped server_name).

The client connects from 127.0.0.7 (Linux routes all of 127.0.0.0/8 to loopback), nginx reaches
the app from 127.0.0.1 (TRUSTED_PROXY), so the usage record shows whose address the app believed.
`make nginx` installs Debian's nginx when it can; without it these tests skip and say why.
"""
import datetime
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from portal import apikeys, catalog, config
from portal.database import atomic
from portal.extensions import db
from portal.models import Account
from portal.pricing import Usage, quote
from tests.factories import make_user
from tests.fake_upstream import OPENAI_KEY
from tests.processes import ROOT, Serving, flask_command, free_port, serving_env
from tests.proxy.conftest import GPT, records

SHIPPED = ROOT / "deploy" / "nginx.conf"
HOST = "ai.example.com"           # the shipped server_name, PUBLIC_URL's host
CLIENT = "127.0.0.7"              # the client's address, as nginx sees it
FORGED = "203.0.113.9"            # what the client claims in X-Forwarded-For
CREDIT = 10_000_000
DEADLINE = 60.0                   # generous: a busy 2-core machine


def nginx_binary() -> str:
    """This machine's nginx (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("nginx is not installed (`make nginx` installs Debian's as root): deploy/nginx.conf is not run")
    return found


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for HOST and its key, the certificate also being the client's only trust anchor."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx.conf no longer contains {old!r}: update tests/test_nginx.py"
    return text.replace(old, new)


@dataclass
class Nginx:
    binary: str
    folder: Path
    http_port: int
    https_port: int
    cert: Path

    @property
    def conf(self) -> Path:
        return self.folder / "nginx.conf"

    def command(self, *args: str) -> list[str]:
        return [self.binary, "-e", str(self.folder / "error.log"), "-p", str(self.folder), "-c", str(self.conf), *args]

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no error log)"


def render(binary: str, folder: Path, app_ports: list[int]) -> Nginx:
    """The shipped include, tied to this machine, inside a whole nginx.conf of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(folder)
    site = Nginx(binary, folder, free_port(), free_port(), cert)
    text = SHIPPED.read_text()
    assert f"server_name {HOST};" in text
    text = replace(text, "    server app:8000;\n", "".join(f"    server 127.0.0.1:{port};\n" for port in app_ports))
    text = replace(text, "listen 80", f"listen 127.0.0.1:{site.http_port}")
    text = replace(text, "listen 443", f"listen 127.0.0.1:{site.https_port}")
    text = replace(text, "/etc/nginx/certs/fullchain.pem", str(cert))
    text = replace(text, "/etc/nginx/certs/privkey.pem", str(key))
    (folder / "tollgate.conf").write_text(text)
    # As root, workers would run as `nobody`, who cannot enter the test's tmp folder.
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    temps = "\n".join(f"    {kind}_temp_path {folder / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    site.conf.write_text(f"""daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} notice;
{user}
events {{
    worker_connections 512;
}}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {folder / 'access.log'};
{temps}
    include {folder / 'tollgate.conf'};
}}
""")
    return site


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def https_pool(site: Nginx, **kwargs) -> urllib3.HTTPSConnectionPool:
    """Requests to nginx's HTTPS port as a browser for HOST makes them (SNI, Host, verified certificate)."""
    return urllib3.HTTPSConnectionPool(
        "127.0.0.1", site.https_port, server_hostname=HOST, assert_hostname=HOST, cert_reqs="CERT_REQUIRED",
        ca_certs=str(site.cert), source_address=(CLIENT, 0), retries=False,
        timeout=urllib3.Timeout(connect=DEADLINE, read=DEADLINE), **kwargs)


def request(pool: urllib3.HTTPSConnectionPool, method: str, path: str, headers: dict | None = None, **kwargs):
    """urllib3 would send Host: 127.0.0.1:port, which nginx's default server closes unanswered."""
    return pool.urlopen(method, path, headers={"Host": HOST, **(headers or {})}, **kwargs)


def tls_socket(site: Nginx, server_name) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(site.cert))
    context.check_hostname = False  # the refusals below are nginx's, not this client's
    raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=DEADLINE, source_address=(CLIENT, 0))
    return context.wrap_socket(raw, server_hostname=server_name)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (b"" when it closes without answering)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_nginx_accepts_the_shipped_config(tmp_path):
    site = render(nginx_binary(), tmp_path / "nginx", [free_port(), free_port()])
    checked = subprocess.run(site.command("-t"), check=False, capture_output=True, text=True, timeout=DEADLINE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "test is successful" in checked.stderr

    # The limits it sets are the app's defaults' match (docs/operating.md, "Timeouts to keep in step").
    defaults = config.load(str(tmp_path / "instance"), {})
    shipped = SHIPPED.read_text()
    body_limit = int(re.search(r"client_max_body_size (\d+)m;", shipped).group(1)) * 1024 * 1024
    assert body_limit >= defaults["MAX_CONTENT_LENGTH"]
    v1 = shipped[shipped.index("location /v1/"):]
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", v1).group(1))
    assert read_timeout > max(defaults["UPSTREAM_FIRST_BYTE_TIMEOUT"], defaults["UPSTREAM_IDLE_TIMEOUT"])


@dataclass
class Site:
    nginx: Nginx
    servers: tuple
    envs: list
    key: str
    account_id: int
    pools: list = field(default_factory=list)

    def https(self, **kwargs) -> urllib3.HTTPSConnectionPool:
        """A connection pool to nginx's HTTPS port, closed when the test ends."""
        self.pools.append(https_pool(self.nginx, **kwargs))
        return self.pools[-1]


@pytest.fixture
def site(app, database, fake, tmp_path):
    """nginx with deploy/nginx.conf in front of two serving processes; everything stopped afterwards."""
    binary = nginx_binary()
    if database.name != "postgres":
        pytest.skip("two serving processes behind nginx share one database: the Postgres run (TEST_DATABASE_URL)")
    with atomic():
        catalog.add_upstream("fake-openai", "openai", fake.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("gpt-test", "fake-openai", GPT, upstream_model="gpt-upstream", max_output_tokens=4096)
    user = make_user("behind-nginx@example.com", credit=CREDIT)
    with atomic():
        _, key = apikeys.issue(user, "tests")
    settings = {"WORKERS": 1, "SERVE_THREADS": 16, "TRUSTED_PROXY": "127.0.0.1", "TRUSTED_PROXY_HOPS": 1,
                "UPSTREAM_FIRST_BYTE_TIMEOUT": DEADLINE, "UPSTREAM_IDLE_TIMEOUT": DEADLINE}
    envs = []
    for name in ("a", "b"):
        env = serving_env(app, tmp_path / name, **settings)
        env["PUBLIC_URL"] = f"https://{HOST}"
        envs.append(env)
    with Serving(envs[0]) as first, Serving(envs[1]) as second:
        servers = (first.wait_ready(), second.wait_ready())
        nginx = render(binary, tmp_path / "nginx", [int(env["PORT"]) for env in envs])
        process = subprocess.Popen(nginx.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        site = Site(nginx, servers, envs, key, user.account.id)
        try:
            deadline = time.monotonic() + DEADLINE
            while not (listening(nginx.http_port) and listening(nginx.https_port)):
                assert process.poll() is None, f"nginx exited {process.returncode}\n{nginx.error_log()}"
                assert time.monotonic() < deadline, f"nginx is not listening\n{nginx.error_log()}"
                time.sleep(0.05)
            yield site
        finally:
            for pool in site.pools:
                pool.close()
            process.send_signal(signal.SIGTERM)  # fast shutdown: workers close their connections
            try:
                process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # a worker left behind
            except ProcessLookupError:
                pass
            process.wait(10)
            print(f"--- nginx error log ---\n{nginx.error_log()}")


def chat(stream: bool) -> bytes:
    return json.dumps({"model": "gpt-test", "stream": stream, "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


class Gate(threading.Event):
    """An Event that knows whether the fake upstream went past it (set, or tired of waiting)."""
    passed = False

    def wait(self, timeout=None) -> bool:
        opened = super().wait(timeout)
        self.passed = True
        return opened


@pytest.mark.slow
def test_a_stream_goes_through_as_it_is_produced_charged_once_to_the_real_address(site, fake):
    gate = Gate()  # the fake sends its second event only once this is set (or after 60 s without it)
    fake.next(gate=gate)
    pool = site.https()
    response = request(pool, "POST", "/v1/chat/completions", body=chat(True), preload_content=False,
                       headers={"Authorization": f"Bearer {site.key}", "Content-Type": "application/json",
                                "X-Forwarded-For": FORGED})
    try:
        assert response.status == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = b""
        while b"\n\n" not in first:
            piece = response.read1(65536)  # a buffering proxy would hold this until the upstream ends
            assert piece, "stream ended before the first event"
            first += piece
        assert first.startswith(b"data: ")
        assert not gate.passed, "the first event reached the client only after the upstream sent the rest"
    finally:
        gate.set()
    rest = first + response.read()
    response.release_conn()
    assert rest.rstrip().endswith(b"data: [DONE]")

    [record] = wait_records(1)
    assert record.status == "ok" and record.cost == quote(GPT, Usage(input=11, output=7))
    # nginx appended the address it saw; the app believed that last hop only, not the client's claim.
    assert record.client_ip == CLIENT
    db.session.rollback()
    account = db.session.scalar(select(Account).where(Account.id == site.account_id))
    assert (account.balance, account.held) == (CREDIT - record.cost, 0)


def wait_records(count: int) -> list:
    deadline = time.monotonic() + DEADLINE
    while len(found := records()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_nginx_itself_refuses_other_hosts_metrics_and_large_bodies(site):
    nginx = site.nginx
    pool = site.https()
    health = request(pool, "GET", "/healthz")
    assert health.status == 200 and "X-Request-Id" in health.headers  # the site itself: answered by the app

    # Port 80: an unknown Host is closed without a byte (444); the site's host is sent to HTTPS.
    for host, expected in (("scanner.example.net", b""), (HOST, b"HTTP/1.1 301")):
        with socket.create_connection(("127.0.0.1", nginx.http_port), timeout=DEADLINE,
                                      source_address=(CLIENT, 0)) as sock:
            sock.sendall(f"GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = read_all(sock)
        assert answer.startswith(expected), answer[:200]
        if expected:
            assert f"Location: https://{HOST}/login".encode() in answer

    # TLS for another name, or for none (a bare IP), is refused before any certificate is shown.
    for server_name in ("scanner.example.net", None):
        with pytest.raises(ssl.SSLError):
            tls_socket(nginx, server_name).close()
    # The site's name in TLS but another Host inside: the default server again, closed unanswered.
    with tls_socket(nginx, HOST) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: scanner.example.net\r\nConnection: close\r\n\r\n")
        assert read_all(sock) == b""

    metrics = request(pool, "GET", "/metrics")
    assert metrics.status == 404 and "X-Request-Id" not in metrics.headers  # nginx's answer, not the app's

    limit = re.search(r"client_max_body_size (\d+)m;", SHIPPED.read_text())
    too_large = int(limit.group(1)) * 1024 * 1024 + 1
    with tls_socket(nginx, HOST) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {site.key}\r\nContent-Length: {too_large}\r\n\r\n".encode())
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"X-Request-Id" not in answer
    assert records() == []


@pytest.mark.slow
def test_calls_spread_over_both_processes_and_the_books_stay_clean(site):
    pool = site.https(maxsize=4)
    calls = 8
    for i in range(calls):
        answer = request(pool, "POST", "/v1/chat/completions", body=chat(stream=bool(i % 2)),
                         headers={"Authorization": f"Bearer {site.key}", "Content-Type": "application/json"})
        assert answer.status == 200, answer.data[:300]
    for server in site.servers:  # round robin: each process served some of them
        server.wait_for(r"POST /v1/chat/completions 200 ", DEADLINE)
    found = wait_records(calls)
    assert len(found) == calls and {r.status for r in found} == {"ok"}
    assert {r.client_ip for r in found} == {CLIENT}
    db.session.rollback()
    account = db.session.scalar(select(Account).where(Account.id == site.account_id))
    assert (account.balance, account.held) == (CREDIT - sum(r.cost for r in found), 0)
    verified = flask_command(site.envs[0], "ledger", "verify")
    assert verified.returncode == 0 and "ledger ok" in verified.stdout, verified.stdout + verified.stderr
