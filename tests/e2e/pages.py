"""Every page of the portal, in one registry: who sees it, at which address, and how to get there.

The accessibility and phone-width checks (test_axe.py) and `make screenshots` walk this list. A test (test_axe.py's `test_every_page_is_in_the_registry`) matches
each entry's address against the app's URL map, and fails when a GET endpoint is in neither the
registry nor `SKIPPED` (with the reason): a new page cannot be left out by accident.

`build_world()` makes the data the pages show (people with keys, calls, a refund request, a contact
message, an incident, two versions of the terms...) through the domain modules, as demo data; the
registry's addresses take their ids from the `World` it returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Optional, Union

# Who looks at a page: "anon" (logged out) or one of these people, logged in.
PEOPLE = {
    "person": "person@example.com",     # keys, calls, credit: a month of use
    "new": "new@example.com",           # day one: no key, no credit, no call
    "unverified": "unverified@example.com",  # has not opened the confirmation link yet
    "consent": "consent@example.com",   # accepted the terms before a significant change
    "leaver": "leaver@example.com",     # an open refund request
    "suspended": "suspended@example.com",
    "admin": "admin@example.com",       # console, two-factor on
    "operator": "operator@example.com",  # an admin without two-factor: the console says how to turn it on
}
ADMINS = ("admin", "operator")


@dataclass
class World:
    """Ids and tokens of the data `build_world` made (placeholders until it runs)."""

    key_id: int = 1
    request_id: str = "req_0"
    model_id: int = 1
    upstream_id: int = 1
    user_id: int = 1
    message_id: int = 1
    refund_id: int = 1
    incident_id: int = 1
    reset_token: str = "token"
    terms_version: str = "v2"
    user_ids: dict = field(default_factory=dict)


Path = Union[str, Callable[[World], str]]


@dataclass(frozen=True)
class Page:
    name: str  # unique; the screenshot's file name starts with it
    who: str  # "anon" or a key of PEOPLE
    path: Path
    # A page reached by sending a form (a POST's answer): what the browser does after opening `path`.
    then: Optional[Callable] = None
    lands_at: Optional[str] = None  # where `then` leads, when the form sends the browser elsewhere

    def url(self, world: World) -> str:
        return self.path(world) if callable(self.path) else self.path

    @property
    def console(self) -> bool:
        return self.who in ADMINS


# -- pages reached by a form ----------------------------------------------------------------------

def _submit(page) -> None:
    page.locator("main form[method=post] button[type=submit]").last.click()
    page.wait_for_load_state("load")


def _register_again(page, world: World) -> None:
    """Sign up with an address that has an account: the same "check your inbox" page, no new user."""
    page.locator("input[name=email]").fill(PEOPLE["person"])
    page.locator("input[name=password]").fill("another long passphrase")
    page.locator("input[name=accept_terms]").check()
    _submit(page)


def _forgot(page, world: World) -> None:
    page.locator("input[name=email]").fill(PEOPLE["person"])
    _submit(page)


def _empty_login(page, world: World) -> None:
    _submit(page)  # nothing typed: the error summary and both fields' errors


def _create_key(page, world: World) -> None:
    """The new key, shown once (htmx swaps it in)."""
    page.locator("main form[hx-post] input[name=name]").fill("new-laptop")
    page.locator("main form[hx-post]:has(input[name=name]) button[type=submit]").click()
    page.locator("[data-testid=new-key]").wait_for()


def _half_login(page, world: World) -> None:
    """The admin's password, then stop at the second step (no code is used up)."""
    from tests.factories import PASSWORD
    page.locator("input[name=email]").fill(PEOPLE["admin"])
    page.locator("input[name=password]").fill(PASSWORD)
    _submit(page)


def _empty_name(page, world: World) -> None:
    page.locator("input[name=name]").fill("")
    _submit(page)


PAGES: list[Page] = [
    # Logged out.
    Page("home", "anon", "/"),
    Page("pricing", "anon", "/pricing"),
    Page("models", "anon", "/models"),
    Page("quickstart", "anon", "/quickstart"),
    Page("login", "anon", "/login"),
    Page("login-errors", "anon", "/login", then=_empty_login),
    Page("register", "anon", "/register"),
    Page("check-inbox", "anon", "/register", then=_register_again),
    Page("forgot", "anon", "/forgot"),
    Page("forgot-sent", "anon", "/forgot", then=_forgot),
    Page("reset", "anon", lambda w: f"/reset/{w.reset_token}"),
    Page("link-not-valid", "anon", "/verify/not-a-real-token"),
    Page("terms", "anon", "/terms"),
    Page("terms-version", "anon", lambda w: f"/terms/{w.terms_version}"),
    Page("privacy", "anon", "/privacy"),
    Page("refund-policy", "anon", "/legal/refunds"),
    Page("contact", "anon", "/contact"),
    Page("status", "anon", "/status"),
    Page("not-found", "anon", "/no-such-page"),
    Page("login-2fa", "anon", "/login", then=_half_login, lands_at="/login/2fa"),  # last: it leaves a half-done login behind
    # A person with a month of use.
    Page("home-in", "person", "/"),
    Page("dashboard", "person", "/dashboard/"),
    Page("keys", "person", "/keys/"),
    Page("key-limits", "person", lambda w: f"/keys/{w.key_id}/limits"),
    Page("key-rename", "person", lambda w: f"/keys/{w.key_id}/rename"),
    Page("key-rename-errors", "person", lambda w: f"/keys/{w.key_id}/rename", then=_empty_name),
    Page("key-revoke", "person", lambda w: f"/keys/{w.key_id}/revoke"),
    Page("usage", "person", "/usage/"),
    Page("receipt", "person", lambda w: f"/usage/{w.request_id}"),
    Page("billing", "person", "/billing/"),
    Page("billing-success", "person", "/billing/success?session_id=cs_unknown"),
    Page("billing-cancel", "person", "/billing/cancel"),
    Page("statement", "person", "/statement/"),
    Page("refunds", "person", "/billing/refund/"),
    Page("account", "person", "/account/"),
    Page("two-factor-setup", "person", "/account/2fa"),
    Page("contact-in", "person", "/contact"),
    Page("key-created", "person", "/keys/", then=_create_key),  # last: it adds a key
    # Other people.
    Page("dashboard-empty", "new", "/dashboard/"),
    Page("keys-empty", "new", "/keys/"),
    Page("usage-empty", "new", "/usage/"),
    Page("billing-empty", "new", "/billing/"),
    Page("dashboard-unverified", "unverified", "/dashboard/"),
    Page("consent", "consent", "/consent"),
    Page("refunds-open", "leaver", "/billing/refund/"),
    Page("account-refund", "leaver", "/account/"),
    Page("suspended", "suspended", "/account/suspended"),
    Page("dashboard-suspended", "suspended", "/dashboard/"),
    # The console.
    Page("console", "admin", "/admin/"),
    Page("console-users", "admin", "/admin/users"),
    Page("console-user", "admin", lambda w: f"/admin/users/{w.user_id}"),
    Page("console-inbox", "admin", "/admin/inbox"),
    Page("console-message", "admin", lambda w: f"/admin/inbox/{w.message_id}"),
    Page("console-refunds", "admin", "/admin/refunds"),
    Page("console-refund", "admin", lambda w: f"/admin/refunds/{w.refund_id}"),
    Page("console-announcements", "admin", "/admin/announcements"),
    Page("console-models", "admin", "/admin/models"),
    Page("console-model", "admin", lambda w: f"/admin/models/{w.model_id}"),
    Page("console-model-new", "admin", "/admin/models/new"),
    Page("console-models-import", "admin", "/admin/models/import"),
    Page("console-upstreams", "admin", "/admin/upstreams"),
    Page("console-upstream", "admin", lambda w: f"/admin/upstreams/{w.upstream_id}"),
    Page("console-upstream-new", "admin", "/admin/upstreams/new"),
    Page("console-signals", "admin", "/admin/signals"),
    Page("console-site", "admin", "/admin/site"),
    Page("console-incidents", "admin", "/admin/site/incidents"),
    Page("console-incident", "admin", lambda w: f"/admin/site/incidents/{w.incident_id}"),
    Page("console-legal", "admin", "/admin/legal"),
    Page("console-legal-terms", "admin", "/admin/legal/terms"),
    Page("console-legal-version", "admin", lambda w: f"/admin/legal/terms/{w.terms_version}"),
    Page("console-audit", "admin", "/admin/audit"),
    Page("account-two-factor-on", "admin", "/account/"),
    Page("console-needs-two-factor", "operator", "/admin/"),
]

# GET endpoints that are not pages a person reads, each with the reason.
SKIPPED = {
    "static": "files (CSS, JS, images)",
    "site_logo": "the uploaded logo (an image)",
    "health.healthz": "a health check for the load balancer (text)",
    "health.readyz": "a readiness check (text)",
    "health.metrics_page": "Prometheus metrics (text)",
    "status.as_json": "JSON",
    "usage.export": "a CSV download",
    "statement.csv_download": "a CSV download",
    "statement.json_download": "a JSON download",
    "account.export": "a JSON download",
    "admin.models_export": "a price-file download",
    "account.password": "GET only redirects (303) to its section of the account page",
    "account.email": "GET only redirects (303) to its section of the account page",
    "account.two_factor_disable": "GET only redirects (303) to its section of the account page",
    "account.close": "GET only redirects (303) to its section of the account page",
    "account.confirm_email": "the link in the mail: it changes the address and redirects to the account page",
    "billing.checkout_again": "GET only redirects to the billing page",
    "billing.alerts_again": "GET only redirects to the billing page",
    "billing.auto_topup_again": "GET only redirects to the billing page",
    "billing.forget_card_again": "GET only redirects to the billing page",
    "codes.redeem_again": "GET only redirects to the billing page",
    "refunds.cancel_again": "GET only redirects to the refund page",
    "auth.resend_verification_again": "GET only redirects to the dashboard (resending is a POST from it)",
}


def endpoint_of(app, page: Page, world: World) -> str:
    """The endpoint the page's address reaches (404 pages: "404")."""
    from werkzeug.exceptions import NotFound
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _args = adapter.match((page.lands_at or page.url(world)).split("?")[0], method="GET")
    except NotFound:
        return "404"
    return endpoint


def page_endpoints(app) -> dict[str, list[str]]:
    """GET endpoints of the app that a person could open in a browser: endpoint -> its rules."""
    found: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.endpoint.startswith("proxy."):
            found.setdefault(rule.endpoint, []).append(rule.rule)
    return found


# -- the data the pages show ---------------------------------------------------------------------

def build_world() -> World:
    """People, keys, calls, money, a refund request, a message, an incident and legal texts (in the app context)."""
    from portal import catalog, inbox, legal, ledger, moderation, refunds, status, users
    from portal.audit import Actor
    from portal.database import atomic
    from portal.extensions import db
    from portal.models import EntryKind, LegalKind, User, utcnow
    from portal.pricing import Price
    from tests.factories import make_admin, make_user
    from tests.web.test_usage import make_calls

    now = utcnow()
    world = World()
    with atomic():
        legal.publish(LegalKind.TERMS, "v1", "# Terms of service\n\nPrepaid credit pays for API calls.",
                      now=now - timedelta(days=60))
        legal.publish(LegalKind.PRIVACY, "v1", "# Privacy policy\n\nWe keep your email address and a record of "
                      "each call.", now=now - timedelta(days=60))
        legal.publish(LegalKind.REFUND_POLICY, "v1", "# Refunds\n\nUnused credit is refunded on request.",
                      now=now - timedelta(days=60))
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.set_model("gpt-x", "openai", Price(input=1_000_000, output=4_000_000))
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")
        catalog.set_model("claude-sonnet", "anthropic", Price(input=3_000_000, output=15_000_000))
    for who, email in PEOPLE.items():
        if who == "admin":
            user = make_admin(email, credit=2_000_000)
        else:
            user = make_user(email, admin=who == "operator", verified=who != "unverified",
                             credit={"person": 20_000_000, "leaver": 7_500_000, "suspended": 3_000_000}.get(who, 0))
        world.user_ids[who] = user.id
    with atomic():
        consent = db.session.get(User, world.user_ids["consent"])
        legal.accept(consent, legal.current(LegalKind.TERMS), "203.0.113.9")
    world.key_id, ids = make_calls(PEOPLE["person"], 4, "laptop", "echo-1")
    make_calls(PEOPLE["person"], 2, "ci-server", "a-model-with-a-rather-long-name-for-a-phone")
    make_calls(PEOPLE["leaver"], 1, "old", "echo-1")
    world.request_id = ids[0]
    with atomic():
        terms = legal.publish(LegalKind.TERMS, "v2", "# Terms of service\n\n## Credit\n\nPrepaid credit pays for "
                              "API calls at the prices on the pricing page, and expires 12 months after your last "
                              "top-up.\n\n## Refunds\n\nUnused credit is refunded on request.",
                              significant=True, now=now - timedelta(days=1))
        world.terms_version = terms.version
        for who, user_id in world.user_ids.items():
            if who != "consent":
                legal.accept(db.session.get(User, user_id), terms, "203.0.113.9")
        actor = Actor.cli()
        world.refund_id = refunds.request(db.session.get(User, world.user_ids["leaver"]),
                                          "I no longer need the service.").id
        moderation.suspend(actor, db.session.get(User, world.user_ids["suspended"]), "Card testing from this account")
        world.incident_id = status.add(actor, "Slow answers from claude-sonnet",
                                       "Calls take longer than usual; we are looking into it.").id
        found = users.request_password_reset(PEOPLE["person"])
        world.reset_token = found[1]
        world.model_id = catalog.find_model("echo-1").id
        world.upstream_id = catalog.find_upstream("openai").id
        ledger.credit(db.session.get(User, world.user_ids["person"]).account.id, 10_000_000, EntryKind.ADJUSTMENT,
                      memo="goodwill credit")
    world.user_id = world.user_ids["person"]
    world.message_id = inbox.submit(email="someone@example.net", subject="Which model is best for code review?",
                                    message="Hello,\n\nI am choosing between gpt-x and claude-sonnet.",
                                    category="question", ip="198.51.100.20").message.id
    return world


# -- in the browser --------------------------------------------------------------------------------

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LOCALES = {"en": "en-US", "zh": "zh-CN"}


def new_context(browser, size: str, scheme: str, lang: str):
    """A browser context at one screen size, colour scheme and language; console errors in `context.errors`."""
    context = browser.new_context(viewport=SIZES[size], color_scheme=scheme, locale=LOCALES[lang],
                                  extra_http_headers={"Accept-Language": f"{LOCALES[lang]},{lang};q=0.9"})
    context.errors = []
    context.on("console", lambda message: context.errors.append(message.text) if message.type == "error" else None)
    return context


def log_in(page, base: str, who: str, world: World) -> None:
    """Log in as one of PEOPLE, as a person does (by field names, so in either language)."""
    from tests.factories import PASSWORD, totp_code

    page.goto(f"{base}/login")
    page.locator("input[name=email]").fill(PEOPLE[who])
    page.locator("input[name=password]").fill(PASSWORD)
    _submit(page)
    if "/login/2fa" in page.url:
        page.locator("input[name=code]").fill(totp_code(world.user_ids[who]))
        _submit(page)
    if "/login" in page.url:
        raise AssertionError(f"could not log in as {who}: still at {page.url}")


def visit(page, base: str, entry: Page, world: World) -> None:
    """Open the page (and send its form, for a page that answers one)."""
    page.goto(base + entry.url(world))
    if entry.then is not None:
        entry.then(page, world)
    page.wait_for_load_state("load")


def by_person(entries: list[Page]) -> dict[str, list[Page]]:
    """The entries grouped by who sees them, in registry order (one browser context each)."""
    groups: dict[str, list[Page]] = {}
    for entry in entries:
        groups.setdefault(entry.who, []).append(entry)
    return groups
