"""WTForms used by several views."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ..users import MIN_PASSWORD_LENGTH


def password_field(label="Password", autocomplete="new-password"):
    return PasswordField(label, validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=200,
                                                                   message=f"Use at least {MIN_PASSWORD_LENGTH} characters.")],
                         render_kw={"autocomplete": autocomplete})


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()], render_kw={"autocomplete": "username"})
    password = PasswordField("Password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"})


class RegisterForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)],
                       render_kw={"autocomplete": "email"})
    password = password_field()
    accept_terms = BooleanField("I accept the terms of service", validators=[DataRequired(
        message="You need to accept the terms to create an account.")])


class TwoFactorForm(FlaskForm):
    code = StringField("Code from your authenticator app, or a recovery code", validators=[DataRequired()],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "text"})


class EmailForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()], render_kw={"autocomplete": "email"})


class NewPasswordForm(FlaskForm):
    password = password_field("New password")


class ContactForm(FlaskForm):
    email = EmailField("Your email", validators=[DataRequired(), Length(max=254)])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=200)])
    message = TextAreaField("Message", validators=[DataRequired(), Length(max=5000)])


class ConsentForm(FlaskForm):
    reason = TextAreaField("Anything you want us to know (optional)", validators=[Length(max=2000)])
