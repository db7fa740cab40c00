"""Log in and out."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from .. import accounts
from ..database import atomic
from ..errors import DomainError
from ..extensions import db, login_manager
from ..models import User

bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."


@login_manager.user_loader
def load_user(user_id: str):
    """The session's user, or None (logged out) once they are suspended or terminated."""
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.is_active else None


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def _safe_next(target: str | None) -> str:
    """Only local paths: never an absolute or scheme-relative URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        with atomic():
            try:
                user = accounts.find_user(form.email.data)
            except DomainError:
                user = None
            valid = user is not None and accounts.check_password(user, form.password.data)
        if valid and user.is_active:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append(
            "This account is not active." if valid else "Email or password is not correct.")
    return render_template("auth/login.html", form=form), 200 if not form.errors else 400


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are logged out.")
    return redirect(url_for("pages.home"))
