"""The WSGI entry point: waitress serves `wsgi:app`; `flask --app wsgi` runs operator commands."""
from portal import create_app

app = create_app()
