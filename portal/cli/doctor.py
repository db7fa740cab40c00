"""`flask --app wsgi doctor`: check a production setup and say what to fix (portal/doctor.py)."""
import click
from flask import current_app

from .. import doctor


@click.command("doctor")
@click.option("--check-url", metavar="URL",
              help="Also fetch URL/readyz as clients do (through the reverse proxy) and compare with PUBLIC_URL.")
def doctor_command(check_url):
    """Check the setup: secret key, PUBLIC_URL, mail, terms and privacy, Stripe, Redis, the trusted proxy,
    migrations, upstream keys. One line per check; exit 1 on any problem."""
    findings = doctor.run(current_app._get_current_object(), check_url=check_url)
    width = max(len(f.check) for f in findings)
    for finding in findings:
        click.echo(f"{finding.level:<7}  {finding.check:<{width}}  {finding.message}")
    problems = sum(f.level == doctor.PROBLEM for f in findings)
    warnings = sum(f.level == doctor.WARNING for f in findings)
    click.echo(f"{problems} problem(s), {warnings} warning(s)")
    if problems:
        raise SystemExit(1)
