"""One line of `millet demo`: what a scene did, the answers it got, and whether they were right.

Shared by the demo's scenes (the ledger's day in `demo.py`, the wallet's in
`demo_wallet.py`) so that every scene prints the same way. It prints; it decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol, TypeVar

from rich.table import Table
from stdnum.cn import ric

from milletpay.identity import IdentityService, PhoneTaken, User

#: The answers that mean "done": the ledger's `ok`, a wallet operation's `completed`, a
#: payment's `succeeded`, a payout's `paid`, a webhook delivery `verified`.
DONE_ANSWERS = frozenset({"ok", "completed", "succeeded", "paid", "verified"})


@dataclass(frozen=True)
class Outcome:
    """One scene's line: what happened, the answers, and whether they were right."""

    text: str
    codes: tuple[str, ...]
    as_expected: bool


def counted(code: str, times: int) -> str:
    return code if times == 1 else f"{code} ×{times}"


def answer_colour(result: Outcome) -> str:
    """Green for done, yellow for the expected refusals and retries, red for surprises."""
    if not result.as_expected:
        return "red"
    return "green" if set(result.codes) <= DONE_ANSWERS else "yellow"


def scene_line(label: str, result: Outcome) -> Table:
    """One scene as a row: mark, label, what happened (wrapping), the answers."""
    mark = "[green]✓[/green]" if result.as_expected else "[red]✗[/red]"
    answers = ", ".join(counted(code, len(list(run))) for code, run in groupby(result.codes))
    line = Table.grid(padding=(0, 1), expand=True)
    line.add_column(width=1)
    line.add_column(width=8, style="bold")
    line.add_column(ratio=1)
    line.add_column(justify="right", style=answer_colour(result))
    line.add_row(mark, label, result.text, answers)
    return line


#: The region code of the demo casts' ID numbers (Beijing, Chaoyang).
ID_REGION = "110105"
#: Casts one database can hold: each run of a scene registers a new one.
CASTS_MAX = 10_000


class Castable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def born(self) -> str: ...  # YYYYMMDD, digits 7-14 of the ID number


C = TypeVar("C", bound=Castable)


def register_cast(
    identity: IdentityService, people: Sequence[C], phone_prefix: str
) -> tuple[int, dict[C, User]]:
    """Register `people` under the first cast number whose phone numbers (the 4-digit
    `phone_prefix`, the cast number, the person's place) are all free on this database,
    so that a scene runs again on the same database with a new cast."""
    for cast_number in range(1, CASTS_MAX):
        try:
            users = {
                person: identity.register(
                    cast_phone(phone_prefix, cast_number, i),
                    person.name,
                    national_id(person.born, cast_number),
                )
                for i, person in enumerate(people)
            }
        except PhoneTaken:
            continue  # an earlier run's cast
        return cast_number, users
    raise RuntimeError(f"all {CASTS_MAX - 1} demo casts are registered: use a new database")


def cast_phone(phone_prefix: str, cast_number: int, place: int) -> str:
    """The phone number of the person at `place` (from 0) in cast `cast_number`."""
    return f"{phone_prefix}{cast_number:04d}{place + 1:03d}"


def national_id(born: str, cast_number: int) -> str:
    """A valid resident ID number for one of cast `cast_number`, born on `born`."""
    body = f"{ID_REGION}{born}{cast_number % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")
