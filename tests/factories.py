"""Small helpers that make users, credit and models through the domain modules."""
from portal import catalog, ledger, users
from portal.database import atomic
from portal.errors import UnknownUpstream
from portal.models import EntryKind
from portal.pricing import Price

PASSWORD = "correct horse battery"


def make_user(email="person@example.com", *, password=PASSWORD, verified=True, admin=False, credit=0):
    with atomic():
        user = users.create_user(email, password, verified=verified, admin=admin)
        if credit:
            ledger.credit(user.account.id, credit, EntryKind.GRANT, memo="test credit")
    return user


def make_model(public_id="echo-1", price=Price(input=2_000_000, output=8_000_000), upstream="echo"):
    with atomic():
        try:
            catalog.find_upstream(upstream)
        except UnknownUpstream:
            catalog.add_upstream(upstream, "echo")
        model, _ = catalog.set_model(public_id, upstream, price)
    return model
