"""URL converters: what a route accepts is what the database can hold."""
from werkzeug.routing import IntegerConverter

ID_MAX = 2**31 - 1  # Postgres `integer`; a larger id in a URL would fail inside the database


class IdConverter(IntegerConverter):
    """`<int:...>` for every route: ids from 0 to ID_MAX; anything else is no match (404)."""

    def __init__(self, map, fixed_digits=0, min=None, max=ID_MAX, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
