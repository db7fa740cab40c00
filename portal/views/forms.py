"""WTForms used by several views."""
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, TextAreaField, ValidationError
from wtforms.validators import DataRequired, Length

from ..errors import InvalidInput
from ..users import MIN_PASSWORD_LENGTH, clean_email


def password_field(label=None, autocomplete="new-password"):
    # Length fills in %(min)d / %(max)d itself.
    return PasswordField(label or _l("Password"), validators=[
        DataRequired(message=_l("Choose a password of at least %(min)d characters.", min=MIN_PASSWORD_LENGTH)),
        Length(min=MIN_PASSWORD_LENGTH, message=_l("Use at least %(min)d characters.")),
        Length(max=200, message=_l("Use at most %(max)d characters."))],
        render_kw={"autocomplete": autocomplete})


def email_address(form, field):
    """A validator: an address `users.clean_email` takes, said in plain words when it is not."""
    try:
        clean_email(field.data)
    except InvalidInput:
        raise ValidationError(_l("Enter an email address like name@example.com.")) from None


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(message=_l("Enter your email address."))],
                       render_kw={"autocomplete": "username"})
    password = PasswordField(_l("Password"), validators=[DataRequired(message=_l("Enter your password."))],
                             render_kw={"autocomplete": "current-password"})


class RegisterForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(message=_l("Enter your email address.")), email_address],
                       render_kw={"autocomplete": "email"})
    password = password_field()
    accept_terms = BooleanField(_l("I accept the terms of service"), validators=[DataRequired(
        message=_l("Tick the box to accept the terms: you need to accept them to create an account."))])


class TwoFactorForm(FlaskForm):
    code = StringField(_l("Code from your authenticator app, or a recovery code"),
                       validators=[DataRequired(message=_l("Enter the 6-digit code your app shows, or a recovery code."))],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "text"})


class EmailForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(message=_l("Enter your email address."))],
                       render_kw={"autocomplete": "email"})


class NewPasswordForm(FlaskForm):
    password = password_field(_l("New password"))


class ContactForm(FlaskForm):
    email = EmailField(_l("Your email"), validators=[DataRequired(), Length(max=254)])
    subject = StringField(_l("Subject"), validators=[DataRequired(), Length(max=200)])
    message = TextAreaField(_l("Message"), validators=[DataRequired(), Length(max=5000)])


class ConsentForm(FlaskForm):
    reason = TextAreaField(_l("Anything you want us to know (optional)"), validators=[Length(max=2000)])
