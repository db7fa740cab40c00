"""Console: the home page (dashboards are being built; see issue 10)."""
from flask import render_template

from . import bp, section


@bp.get("/")
def index():
    return render_template("admin/index.html")


section("admin.index", "Overview")
