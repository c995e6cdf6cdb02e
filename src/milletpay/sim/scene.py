"""One line of `millet demo`: what a scene did, the answers it got, and whether they were right.

Shared by the demo's scenes (the ledger's day in `demo.py`, the wallet's in
`demo_wallet.py`) so that every scene prints the same way. It prints; it decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from rich.table import Table

#: The answers that mean "done": the ledger's `ok`, a wallet operation's `completed`.
DONE_ANSWERS = frozenset({"ok", "completed"})


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
