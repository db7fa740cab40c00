"""The Claude Code and Codex CLIs, run for real against the gateway (served by waitress) and a fake upstream.

`make clis` installs both, pinned, from tests/clis/package-lock.json into tests/clis/node_modules;
`make test` does so first. Without node and npm, or before the install, these tests skip and say why.

Each CLI runs as a user would start it, in a fresh HOME and working folder, with an environment of
its own (none of the machine's API keys or settings), stdin closed (both wait on an open stdin
pipe), and no traffic but to the gateway: Claude Code's CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,
Codex's analytics and plugins off.
"""
import shutil
import subprocess
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from portal import catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from tests.fake_upstream import OPENAI_KEY
from tests.proxy import conftest as proxy_fixtures
from tests.proxy.conftest import CREDIT, balance, wait_for_records

# The proxy tests' fixtures: their app settings, catalog (gpt-test, claude-test) and caller's key.
app_config, catalog_ready, key = proxy_fixtures.app_config, proxy_fixtures.catalog_ready, proxy_fixtures.key

HERE = Path(__file__).resolve().parent
BIN = HERE / "node_modules" / ".bin"
# Far above the second or so each run takes: only a hung CLI gets near it.
TIMEOUT = 120

# deepseek-test: a chat-only upstream (DeepSeek speaks chat completions only), for Codex's Responses calls.
DEEPSEEK = Price(input=270_000, output=1_100_000, cache_read=70_000)


def unavailable(command: str) -> typing.Optional[str]:
    """Why the CLI `command` cannot run here, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return f"node and npm are not installed: the {command} CLI tests need them (`make clis` installs the CLI)"
    if not (BIN / command).exists():
        return f"the {command} CLI is not installed: run `make clis` (npm ci --prefix tests/clis)"
    return None


@dataclass
class Run:
    stdout: str
    stderr: str


def run(command: list, env: dict, cwd: Path) -> Run:
    """Run a CLI to the end; it must succeed."""
    base = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
    done = subprocess.run([str(BIN / command[0]), *command[1:]], env={**base, **env}, cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return Run(done.stdout, done.stderr)


@pytest.fixture
def claude(gateway, key, tmp_path):
    """Run `claude -p PROMPT [args]` on MODEL at the gateway, as a new user in an empty folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()

    def claude_(model: str, prompt: str, *args: str) -> Run:
        env = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"),
               "ANTHROPIC_BASE_URL": gateway, "ANTHROPIC_API_KEY": key,
               # The main model and the small one it uses for side tasks: ours, both.
               "ANTHROPIC_MODEL": model, "ANTHROPIC_SMALL_FAST_MODEL": model,
               "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
               # Else it looks up api.anthropic.com (and its request grows by a tool).
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
        done = run(["claude", "-p", prompt, "--no-session-persistence", *args], env, work)
        assert done.stderr == ""  # it says nothing there when all went well
        return done

    return claude_


@pytest.fixture
def codex(gateway, key, tmp_path):
    """Run `codex exec PROMPT [args]` on MODEL through a custom provider at the gateway, as a new user
    in an empty folder (not a git repository)."""
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    (codex_home / "config.toml").write_text(f"""\
model_provider = "tollgate"

# Else it looks up chatgpt.com, ab.chatgpt.com and github.com.
[analytics]
enabled = false
[features]
plugins = false

[model_providers.tollgate]
name = "Tollgate under test"
base_url = "{gateway}/v1"
env_key = "TOLLGATE_API_KEY"
wire_api = "responses"
""")

    def codex_(model: str, prompt: str, *args: str) -> Run:
        env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "TOLLGATE_API_KEY": key}
        done = run(["codex", "exec", "--skip-git-repo-check", "-m", model, *args, prompt], env, work)
        # Its transcript goes to stderr, warnings and all; a stream it could not follow shows as ERROR
        # lines ("OutputTextDelta without active item", "Reconnecting...") even when it exits 0.
        assert not [line for line in done.stderr.splitlines() if "ERROR" in line], done.stderr
        return done

    return codex_


@pytest.fixture
def deepseek(catalog_ready, fake):
    """deepseek-test on fake-deepseek: an OpenAI-compatible upstream of DeepSeek's dialect, chat only."""
    with atomic():
        catalog.add_upstream("fake-deepseek", "openai", fake.url + "/v1", OPENAI_KEY, dialect="deepseek",
                             allow_private_host=True)
        catalog.set_model("deepseek-test", "fake-deepseek", DEEPSEEK, upstream_model="deepseek-upstream",
                          max_output_tokens=8192)
    return fake


THOUGHT = "The user wants the marker printed."


def scripted(usage: Usage, dialect: str) -> dict:
    """The fake's knobs for reporting `usage` as `dialect` does."""
    return {"input": usage.input, "cache_read": usage.cache_read, "output": usage.output, "dialect": dialect}


def check_charges(gateway, key, price, usages: list, route: str) -> None:
    """One streamed call per usage on `route`, each charged exactly its usage at `price`; nothing held."""
    records = wait_for_records(len(usages))
    assert [(r.status, r.route, r.streamed) for r in records] == [("ok", route, True)] * len(usages)
    for record, usage in zip(records, usages):
        assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (
            usage.input, usage.cache_read, usage.output)
        assert record.cost == quote(price, usage)
    money = balance(gateway, key)
    assert (CREDIT - money["balance_micro_usd"], money["held_micro_usd"]) == (
        sum(quote(price, usage) for usage in usages), 0)
