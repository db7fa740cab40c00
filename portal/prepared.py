"""Hot-path statements run on the driver's own cursor, each compiled once per database dialect.

SQLAlchemy's `Connection.execute` costs 40-75 µs of interpreter time per statement (cache-key
lookup, parameter construction, an execution context, a result object) where SQLite itself takes
a few: across the ten statements of a billed call's hold and settlement, about a fifth of the
call's processor time (docs/performance.md). The statements stay SQLAlchemy Core constructs, one
definition for SQLite and Postgres with their types; only the per-execution machinery is skipped.
What SQLAlchemy would do is done the same way, from its own compiled form: the dialect's SQL, its
parameter style and order, the types' bind and result processors, Python-side column defaults,
and its wrapping of driver errors (so `database.unavailable` and IntegrityError handling see what
they always saw).

Listeners on the cursor events (tests that inject a race at an exact statement) see every
statement: with any such listener installed, statements go through `Connection.execute`.
"""
from collections import namedtuple
from typing import Any, Optional

from sqlalchemy.engine import Connection


class Ran:
    """A statement's outcome: `rowcount`, and its rows (RETURNING or SELECT) as named tuples."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list):
        self.rowcount, self.rows = rowcount, rows

    def first(self):
        return self.rows[0] if self.rows else None

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    def one(self):
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def all(self) -> list:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class _Form:
    """A statement as one dialect runs it."""

    def __init__(self, statement, dialect, keys: tuple):
        # An INSERT or UPDATE without .values() sets the columns it is given, as execute() does.
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.escaped_bind_names or compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError(f"not a plain statement (its parameters need rendering per execution): {statement}")
        self.sql = compiled.string
        self.positional = compiled.positiontup if dialect.positional else None
        self.processors = dict(compiled._bind_processors)
        # Values fixed in the statement (a literal in a WHERE clause), and Python-side column defaults
        # an INSERT leaves to the execution (created_at, status): each fills its bind unless given.
        self.defaults = {}
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not (default.is_scalar or default.is_callable):
                raise ValueError(f"{column} has a default this runner cannot compute; pass it explicitly")
            self.defaults[column.key] = default
        self.fixed = {name: bind.value for name, bind in compiled.binds.items()
                      if not bind.required and bind.callable is None and name not in self.defaults}
        self.required = frozenset(name for name, bind in compiled.binds.items()
                                  if bind.required and name not in self.defaults)
        columns = compiled._result_columns
        self.result = None
        if columns:
            self.result = (namedtuple("Row", [c[0] for c in columns], rename=True),
                           [c[3]._cached_result_processor(dialect, None) for c in columns])

    def parameters(self, given: dict):
        values = {**self.fixed, **given} if self.fixed else dict(given)
        for name, default in self.defaults.items():
            if name not in values:
                values[name] = default.arg(None) if default.is_callable else default.arg
        if not self.required <= values.keys():
            missing = sorted(self.required - values.keys())
            raise KeyError(f"no value for bind parameter(s) {', '.join(missing)}")
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        if self.positional is not None:
            return tuple(values[name] for name in self.positional)
        return values

    def rows(self, cursor) -> list:
        if cursor.description is None:
            return []
        if self.result is None:  # text(): no columns known, so no types to process; the driver's values
            return [tuple(raw) for raw in cursor.fetchall()]
        row, processors = self.result
        fetched = cursor.fetchall()
        if any(processors):
            return [row(*(p(v) if p else v for p, v in zip(processors, raw))) for raw in fetched]
        return [row(*raw) for raw in fetched]


class Prepared:
    """A Core statement, compiled once per dialect (and set of parameter names) and run on the DBAPI
    cursor of a connection."""

    __slots__ = ("statement", "_forms")

    def __init__(self, statement):
        self.statement = statement
        self._forms: dict[tuple, _Form] = {}

    def run(self, connection: Connection, params: Optional[dict] = None) -> Ran:
        params = params or {}
        dispatch = connection.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            result = connection.execute(self.statement, params)
            rows = list(result.all()) if result.returns_rows else []
            return Ran(result.rowcount, rows)
        dialect = connection.dialect
        shape = (dialect.name, *params)  # (a call site passes its names in one order)
        form = self._forms.get(shape)
        if form is None:
            form = self._forms[shape] = _Form(self.statement, dialect, shape[1:])
        if not connection.in_transaction():
            connection.begin()  # as execute() would: the dialect's BEGIN (BEGIN IMMEDIATE when writing)
        bound = form.parameters(params)
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(form.sql, bound)
            rows = form.rows(cursor)
            return Ran(cursor.rowcount, rows)  # (sqlite3 counts RETURNING's rows as they are fetched)
        except dialect.loaded_dbapi.Error as exc:
            connection._handle_dbapi_exception(exc, form.sql, bound, cursor, None)  # raises SQLAlchemy's wrapper
            raise  # (not reached)
        finally:
            cursor.close()


_prepared: dict[int, tuple[Any, Prepared]] = {}
_MOST = 256  # module-level statements number a few dozen; more means some are built per call


def run(connection: Connection, statement, params: Optional[dict] = None) -> Ran:
    """Run a module-level (built once) Core statement on `connection` through its Prepared form."""
    found = _prepared.get(id(statement))
    if found is None or found[0] is not statement:
        if len(_prepared) >= _MOST:
            return Prepared(statement).run(connection, params)
        found = _prepared[id(statement)] = (statement, Prepared(statement))
    return found[1].run(connection, params)
