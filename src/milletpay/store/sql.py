"""`Sql`: a plain SQL statement for the hot paths, handed to the driver as it is.

SQLAlchemy Core builds, caches and compiles a statement on every call, and wraps every
result; on the path of every payment that costs more than running the statement. An
`Sql` is written once, with `:name` parameters, rewritten once per driver (psycopg wants
`%(name)s`; SQLite takes `:name`; a closing `FOR UPDATE` is dropped on SQLite, whose
write transactions already exclude every other writer), and run on the DBAPI cursor of
the caller's connection: the same transaction as everything else, no compiler and no
result wrapping in between. Rows come back as named tuples. Use it where a statement
runs for every payment; Core elsewhere.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")
_FOR_UPDATE = " FOR UPDATE"


class Rows:
    """What a statement answered: its rows (named tuples) and the rows it changed."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound(f"{len(self._rows)} rows where exactly one was expected")
        return self._rows[0]

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound(f"{len(self._rows)} rows where one was expected")
        return self.first()

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Sql:
    def __init__(self, text: str) -> None:
        self.text = " ".join(text.split())
        self._pyformat = _PARAMETER.sub(r"%(\1)s", self.text.replace("%", "%%"))
        self._sqlite = self.text.removesuffix(_FOR_UPDATE)
        self._row_types: dict[tuple[str, ...], Any] = {}

    @classmethod
    def insert(cls, table: sa.TableClause) -> Sql:
        """The INSERT of one whole row of `table`: a parameter per column, named as the
        column."""
        names = [column.name for column in table.columns]
        columns, values = ", ".join(names), ", ".join(f":{name}" for name in names)
        return cls(f"INSERT INTO {table.name} ({columns}) VALUES ({values})")

    def __repr__(self) -> str:
        return f"Sql({self.text!r})"

    def run(self, conn: sa.Connection, **params: Any) -> Rows:
        """Run on `conn` (in its transaction) with these parameters."""
        if conn.dialect.name == "sqlite":
            text = self._sqlite
        elif conn.dialect.paramstyle == "pyformat":
            text = self._pyformat
        else:
            text = self.text
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(text, params)
            if cursor.description is None:
                return Rows([], cursor.rowcount)
            row_type = self._row_type(tuple(column[0] for column in cursor.description))
            return Rows([row_type._make(row) for row in cursor.fetchall()], cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy raises it: callers catch `sa.exc.IntegrityError` and the
            # like whichever way their statement ran.
            raise sa.exc.DBAPIError.instance(
                text, params, exc, conn.dialect.loaded_dbapi.Error
            ) from exc
        finally:
            cursor.close()

    def _row_type(self, names: tuple[str, ...]) -> Any:
        """A named-tuple type for these columns, made once per statement and shape."""
        if names not in self._row_types:
            self._row_types[names] = namedtuple("Row", names, rename=True)
        return self._row_types[names]
