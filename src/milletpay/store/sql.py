"""`Sql`: a plain SQL statement for the hot paths, handed to the driver as it is.

SQLAlchemy Core builds, caches and compiles a statement on every call; on the path of
every payment that costs more than running the statement. An `Sql` is written once, with
`:name` parameters, rewritten once per driver (psycopg wants `%(name)s`; SQLite takes
`:name`; a closing `FOR UPDATE` is dropped on SQLite, whose write transactions already
exclude every other writer), and run with `Connection.exec_driver_sql`: the same connection and
transaction as everything else, just no compiler in between. Use it where a statement
runs for every payment; Core elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.util.typing import TupleAny

_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")
_FOR_UPDATE = " FOR UPDATE"


class Sql:
    def __init__(self, text: str) -> None:
        self.text = " ".join(text.split())
        self._pyformat = _PARAMETER.sub(r"%(\1)s", self.text.replace("%", "%%"))
        self._sqlite = self.text.removesuffix(_FOR_UPDATE)

    def __repr__(self) -> str:
        return f"Sql({self.text!r})"

    def run(self, conn: sa.Connection, **params: Any) -> sa.CursorResult[*TupleAny]:
        """Run on `conn` with these parameters; the driver's result."""
        if conn.dialect.name == "sqlite":
            text = self._sqlite
        elif conn.dialect.paramstyle == "pyformat":
            text = self._pyformat
        else:
            text = self.text
        return conn.exec_driver_sql(text, params)
