"""A form sent with a stale or missing CSRF token: show it again, never act on it.

CSRFProtect checks every portal POST before its view runs, and stays the safety net. When the
check fails (a form left open past the token's lifetime, a session that ended, a forged post):
- a view marked `@rerender_on_csrf_error`, one whose FlaskForm validates before anything changes,
  runs again without the token: its form fails validation on the csrf field, so the view shows the
  form again with what the person typed, a fresh token and the error (said in people's words by
  `error_summary`), and acts on nothing;
- any other form gets a page saying what happened, with a link (a GET, so a fresh token) back to
  the page the form was on;
- htmx requests get a 400 with a short text, which app.js shows in its banner.
"""
from urllib.parse import urlsplit

from flask import current_app, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from .. import links
from ..extensions import htmx

_MARK = "_rerender_on_csrf_error"


def rerender_on_csrf_error(view):
    """Mark a view that validates its FlaskForm before changing anything: on a bad CSRF token it runs
    again and shows its form, instead of a dead-end error page. Put it right under the route."""
    setattr(view, _MARK, True)
    return view


def _marked(view) -> bool:
    while view is not None:
        if getattr(view, _MARK, False):
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def _rest_of_before_request():
    """The before-request hooks CSRFProtect's failure skipped (consent, read-only, a blueprint's guard),
    in the order Flask runs them; the first answer one gives, if any."""
    app = current_app._get_current_object()
    names = (None, *reversed(request.blueprints))
    after_csrf = False
    for name in names:
        for hook in app.before_request_funcs.get(name, ()):
            if name is None and not after_csrf:
                after_csrf = getattr(hook, "__module__", "") == "flask_wtf.csrf"
                continue
            answer = app.ensure_sync(hook)()
            if answer is not None:
                return answer
    return None


def _back() -> str:
    """The page the form was on: the Referer when it is this site, else this URL if it answers GET."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        target = referrer.path + (f"?{referrer.query}" if referrer.query else "")
        if links.is_local_path(target):
            return target
    adapter = current_app.url_map.bind_to_environ(request.environ)
    if adapter.test(request.path, method="GET") and links.is_local_path(request.full_path.rstrip("?")):
        return request.full_path.rstrip("?")
    return url_for("pages.home")


def _again(view):
    """Run the view once more, its form without the token, so the form fails validation there."""
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    try:
        # Inside the try: a hook's abort (a blueprint's guard's 403) is answered as that error, not a 500.
        answer = _rest_of_before_request()
        if answer is not None:
            return current_app.make_response(answer)
        # Every token field goes, a prefixed form's ("pw-csrf_token") too: nothing here can pass the check.
        request.form = ImmutableMultiDict([(key, value) for key, value in request.form.items(multi=True)
                                           if not key.endswith(name)])
        response = current_app.make_response(view(**request.view_args))
    except HTTPException as exc:
        return current_app.make_response(current_app.handle_user_exception(exc))
    if response.status_code in (200, 422):
        response.status_code = 400  # the form again, but the request was refused
    return response


def csrf_error(exc):
    """The CSRFError handler (registered in create_app); see the module's docstring."""
    if htmx:
        return (_("This form has expired. Reload the page and try again."), 400,
                {"Content-Type": "text/plain; charset=utf-8", "Vary": "HX-Request"})
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if request.method == "POST" and view is not None and _marked(view):
        return _again(view)
    return render_template(
        "message.html", title=_("Please try again"),
        message=_("This form expired or came from another site, so nothing was done. Go back to the page, "
                  "check what you entered and send it again."),
        action=(_back(), _("Back to the form"))), 400
