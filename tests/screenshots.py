"""Full-page screenshots of every page of the registry (tests/e2e/pages.py): `make screenshots`.

Each page at both sizes (desktop 1280x800, phone 390x844), light and dark, in English and Chinese,
into screenshots/ (git-ignored) as `<page>-<size>-<scheme>-<lang>.png`. The app runs in this
process on a temporary SQLite database of its own, migrated and filled with the registry's
demo-like data (people with keys, calls, a refund request, a contact message, an incident...), and
is served by waitress in a thread, as the browser tests serve it; nothing of the developer's
instance folder, database or Redis is touched. Debian's chromium takes the pictures (`make browser`).

    python -m tests.screenshots [--out DIR] [--lang en|zh] [--size desktop|phone] [--scheme light|dark] [NAME ...]

NAMEs (registry names, or prefixes like `console`) limit the pages.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_and_offline() -> None:
    """As the test suite does: argon2 at its smallest parameters (the same code paths, a fraction of
    the CPU), and host names other than localhost failing at once instead of waiting on DNS."""
    from argon2 import PasswordHasher

    from portal import egress, users
    from tests.conftest import offline
    users._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    egress.resolver = offline(egress.resolver)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="folder for the PNG files")
    parser.add_argument("--lang", action="append", choices=["en", "zh"], help="only this language (repeatable)")
    parser.add_argument("--size", action="append", choices=["desktop", "phone"], help="only this size")
    parser.add_argument("--scheme", action="append", choices=["light", "dark"], help="only this colour scheme")
    parser.add_argument("names", nargs="*", help="only pages whose registry name starts with one of these")
    args = parser.parse_args(argv)

    from tests.e2e.conftest import ARGS, CHROMIUM
    if not CHROMIUM.exists():
        print("chromium is not installed (`make browser` installs it): no screenshots taken", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    from portal import create_app, notices
    from portal.extensions import db
    from portal.views import auth
    from tests.conftest import migrate, served_in_thread
    from tests.e2e import pages

    chosen = [p for p in pages.PAGES if not args.names or any(p.name.startswith(n) for n in args.names)]
    if not chosen:
        print(f"no page of the registry is named like {args.names}", file=sys.stderr)
        return 2
    langs, sizes, schemes = args.lang or ["en", "zh"], args.size or list(pages.SIZES), args.scheme or ["light", "dark"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    _quick_and_offline()
    auth.REGISTER_LIMIT_IP = 10_000  # the "check your inbox" page is a sign-up in each language
    started, taken = time.monotonic(), 0
    with tempfile.TemporaryDirectory(prefix="tollgate-screenshots-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'screenshots.db'}"
        migrate(url, Path(tmp))
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(Path(tmp) / "instance"),
                          "SECRET_KEY": "screenshots", "PUBLIC_URL": "http://localhost", "REDIS_URL": "",
                          "MAIL_OUTBOX": str(Path(tmp) / "outbox"), "OPERATOR_EMAIL": ""})
        with app.app_context():
            world = pages.build_world()
            with served_in_thread(app) as server, sync_playwright() as playwright:
                base = f"http://127.0.0.1:{server.effective_port}"
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
                try:
                    for lang in langs:
                        for who, group in pages.by_person(chosen).items():
                            context = pages.new_context(browser, sizes[0], schemes[0], lang)
                            page = context.new_page()
                            if who != "anon":
                                pages.log_in(page, base, who, world)
                            for entry in group:
                                pages.visit(page, base, entry, world)
                                for size in sizes:
                                    for scheme in schemes:
                                        page.set_viewport_size(pages.SIZES[size])
                                        page.emulate_media(color_scheme=scheme)
                                        page.screenshot(path=str(out / f"{entry.name}-{size}-{scheme}-{lang}.png"),
                                                        full_page=True, animations="disabled")
                                        taken += 1
                            context.close()
                            print(f"  {lang} {who}: {len(group)} pages", flush=True)
                finally:
                    browser.close()
            notices.drain()
            app.extensions["tollgate.gateway"].close()
            db.session.remove()
            db.engine.dispose()
    print(f"{taken} screenshots of {len(chosen)} pages in {out}/ ({time.monotonic() - started:.0f} s), "
          f"named <page>-<size>-<scheme>-<lang>.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
