"""English and Simplified Chinese: which language a request gets, the catalogues, and local formats.

The language comes from the person's choice (stored on the account, or in the session before they
log in), then the browser's Accept-Language; API calls follow Accept-Language alone. Templates use
`_()` / `{% trans %}`; Python uses `gettext` / `lazy_gettext` from flask_babel.

Catalogues are the `.po` files under portal/translations/<lang>/LC_MESSAGES/, read once per process.
There are no compiled `.mo` files to go stale: reading the sources costs a few milliseconds once.
Flask-Babel 4 would also build a new domain, and so reload every catalogue, on each request.
"""
import threading
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date as babel_date
from babel.dates import format_datetime as babel_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations
from flask import Flask, current_app, has_app_context, has_request_context, redirect, request, session, url_for
from flask_babel import Babel, Domain, get_locale
from flask_login import current_user
from markupsafe import Markup

LANGUAGES = {"en": "English", "zh": "简体中文"}
DEFAULT = "en"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

# Dates: English keeps the ISO forms the portal has always shown (unambiguous for an international
# audience); Chinese uses its own order with 年月日. Times are UTC everywhere, and pages say so.
_DATE_PATTERNS = {
    "en": {"day": "yyyy-MM-dd", "minute": "yyyy-MM-dd HH:mm", "second": "yyyy-MM-dd HH:mm:ss"},
    "zh": {"day": "y年M月d日", "minute": "y年M月d日 HH:mm", "second": "y年M月d日 HH:mm:ss"},
}


def language() -> str:
    """The two-letter language of this request ("en" or "zh"); English outside any request.

    Within an app context alone (a CLI job, the background mail sender) it is English too, unless
    `flask_babel.force_locale` chose another (mail in the recipient's language, portal/mail.py).
    """
    locale = get_locale() if has_app_context() else None
    return locale.language if locale is not None and locale.language in LANGUAGES else DEFAULT


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT
    from proxy import is_api_path  # the API has no session and no account lookup to spare
    if not is_api_path(request.path):
        if current_user.is_authenticated and current_user.locale in LANGUAGES:
            return current_user.locale
        chosen = session.get("lang")
        if chosen in LANGUAGES:
            return chosen
    return request.accept_languages.best_match(LANGUAGES, DEFAULT)


class _Catalogues(Domain):
    """Every `.po` file of a language merged into one gettext catalogue, built once per process."""

    _lock = threading.Lock()
    _built: dict[str, tuple[tuple, Translations]] = {}

    def get_translations(self):
        # Called for every translated string: once built, a language costs one dict lookup.
        lang = language()
        built = self._built.get(lang)
        debug = current_app.debug
        if built is not None and not debug:
            return built[1]
        files = sorted((TRANSLATIONS / lang / "LC_MESSAGES").glob("*.po"))
        # In debug (make run while editing a catalogue) a changed file is read again.
        signature = tuple((f.name, f.stat().st_mtime_ns) for f in files) if debug else ()
        if built is not None and built[0] == signature:
            return built[1]
        with self._lock:
            translations = _compile(files, lang)
            self._built[lang] = (signature, translations)
        return translations


def read_catalogue(files, lang: str) -> Catalog:
    """The messages of several `.po` files as one catalogue (a later file wins a duplicate)."""
    merged = Catalog(locale=lang)
    for path in files:
        with open(path, "rb") as handle:
            for message in read_po(handle, locale=lang):
                if not message.id or not message.string or message.fuzzy:
                    continue
                known = merged.get(message.id, context=message.context)
                if known is not None and known.pluralizable and not message.pluralizable:
                    continue  # a plain entry never hides the plural forms of the same message
                merged[message.id] = message
    return merged


def _compile(files, lang: str) -> Translations:
    buffer = BytesIO()
    write_mo(buffer, read_catalogue(files, lang))
    buffer.seek(0)
    return Translations(fp=buffer)


class _Babel(Babel):
    @property
    def domain_instance(self):
        return _DOMAIN


_DOMAIN = _Catalogues()


# --- formats -------------------------------------------------------------------------------------

def _locale() -> Locale:
    return Locale.parse(language())


def usd(micro: int) -> str:
    """Micro-dollars, exactly, the way this language writes US dollars ("$0.000050", "US$1.50")."""
    value = Decimal(int(micro)).scaleb(-6)
    return format_currency(value, "USD", locale=_locale(), currency_digits=False, decimal_quantization=False)


def usd_cents(micro: int) -> str:
    """Whole cents, rounded down (toward minus infinity): a balance never shows a cent that is not there.

    Down, not toward zero: a debt of $1.239 reads -$1.24, never less than is owed (toward zero, it
    would read -$1.23 and the person would top up a fraction of a cent too little). The exact figure
    is in the `balance` filter's title and on the statement.
    """
    cents = (Decimal(int(micro)).scaleb(-6)).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    return format_currency(cents, "USD", locale=_locale())


def balance(micro: int) -> Markup:
    """A headline amount: 2 decimals on screen, the exact figure on hover (the statement has it too)."""
    exact, short = usd(micro), usd_cents(micro)
    return Markup('<span class="money" title="{}">{}</span>').format(exact, short)


def number(value) -> str:
    return format_decimal(value, locale=_locale())


def _when(value, kind: str) -> str:
    if value is None:
        return ""
    pattern = _DATE_PATTERNS[language()][kind]
    if kind == "day" or not isinstance(value, datetime):
        return babel_date(value if isinstance(value, date) else value.date(), pattern, locale=_locale())
    return babel_datetime(value, pattern, tzinfo=None, locale=_locale())


def day(value) -> str:
    return _when(value, "day")


def minute(value) -> str:
    return _when(value, "minute")


def second(value) -> str:
    return _when(value, "second")


# --- the switcher --------------------------------------------------------------------------------

def choose_language():
    """POST /language: keep the choice (on the account when logged in) and go back where they were."""
    from .extensions import db
    from .links import is_local_path
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session["lang"] = lang
        if current_user.is_authenticated and current_user.locale != lang:
            current_user.locale = lang
            db.session.commit()
    # Back to the page they were on; the home page (which anyone may see) for any other target.
    target = request.form.get("next")
    return redirect(target if is_local_path(target) else url_for("pages.home"), code=303)


def init_app(app: Flask) -> None:
    _Babel(app, locale_selector=select_locale)
    # `{% trans %}` blocks are looked up with their whitespace collapsed, as `pybabel extract`
    # (with trimmed=true, see babel.cfg) writes them into the catalogue.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.add_template_filter(usd, "usd")
    app.add_template_filter(balance, "balance")
    app.add_template_filter(number, "number")
    app.add_template_filter(day, "day")
    app.add_template_filter(minute, "minute")
    app.add_template_filter(second, "second")
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["language"] = language
    # On the app, outside any blueprint: the consent gate and a suspended person's read-only
    # portal both let it through, so anyone can read those pages in their language.
    app.add_url_rule("/language", endpoint="choose_language", view_func=choose_language, methods=["POST"])

