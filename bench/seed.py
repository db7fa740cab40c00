"""Prepare a database for the load harness with the operator's own commands, in one process.

  DATABASE_URL=... python -m bench.seed SPEC.json

SPEC names the upstreams and models: {"upstreams": {name: base_url}, "models": {model: upstream}}.
Runs, as `flask --app wsgi ...` would (the same commands, without starting Python for each):
db upgrade; a verified user with a large grant and one key; a per-minute request limit on the
account far above any load here (its counter is still hit, as on every call in production); each
upstream (OpenAI protocol, allowed a loopback host) and model (1 USD in, 2 USD out per million
tokens). Prints {"key": ..., "email": ...} as JSON.
"""
import json
import sys

EMAIL = "bench@example.com"
CREDIT_USD = "100000"
UPSTREAM_KEY = "sk-bench-upstream"
RPM = "1000000000"


def main():
    spec = json.loads(open(sys.argv[1]).read())
    from portal import config, create_app

    config.load_env_file()
    config.require_database()
    app = create_app()
    runner = app.test_cli_runner()

    def run(*args) -> str:
        result = runner.invoke(args=list(args))
        if result.exit_code != 0:
            raise SystemExit(f"flask {' '.join(args)} failed ({result.exit_code}):\n{result.output}"
                             + (f"\n{result.exception!r}" if result.exception else ""))
        return result.output

    run("db", "upgrade")
    run("users", "create", EMAIL, "--verified")
    run("credits", "grant", EMAIL, CREDIT_USD, "--reason", "load benchmark")
    key = run("keys", "create", EMAIL, "--name", "bench").strip().splitlines()[-1]
    run("limits", "set", EMAIL, "--rpm", RPM, "--reason", "load benchmark")
    for name, base_url in spec["upstreams"].items():
        run("upstreams", "add", name, "--protocol", "openai", "--base-url", base_url, "--api-key", UPSTREAM_KEY,
            "--allow-private-host")
    for model, upstream in spec["models"].items():
        run("models", "set", model, "--upstream", upstream, "--input", "1", "--output", "2")
    print(json.dumps({"key": key, "email": EMAIL}))


if __name__ == "__main__":
    main()
