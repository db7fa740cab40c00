"""One URL, full page or fragment: render a block of the page's own template for htmx requests."""
from flask import current_app, redirect

from ..extensions import htmx  # truthy when the request came from htmx (HX-Request header)


def render(template: str, block: str, status: int = 200, **context):
    """The whole page, or only `block` of it when htmx asked; `Vary: HX-Request` either way."""
    env = current_app.jinja_env
    current_app.update_template_context(context)
    page = env.get_template(template)
    if htmx:
        body = "".join(page.blocks[block](page.new_context(context)))
    else:
        body = page.render(context)
    response = current_app.response_class(body, status=status, mimetype="text/html")
    response.headers["Vary"] = "HX-Request"
    return response


def redirect_to(url: str):
    """A redirect that htmx follows as a full navigation (HX-Redirect) and a browser as a 303."""
    if htmx:
        response = current_app.response_class(status=204)
        response.headers["HX-Redirect"] = url
        response.headers["Vary"] = "HX-Request"
        return response
    return redirect(url, code=303)

