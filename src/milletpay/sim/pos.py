"""`millet pos tap`: one tap end to end, every hop printed.

The user's phone (a Millet Pay user by phone number; a debit card is added as a token
the first time) gets a fresh limited-use key, and is held to the reader of a merchant of
the acquirer's data file. Printed: the APDU dialogue between reader and phone, the
kernel's decision, the acquirer's ISO 8583 request and the switch's answer, the switch's
exchange with the user's bank (the card number masked), and the decision.
"""

from __future__ import annotations

import asyncio
from decimal import InvalidOperation

from rich.console import Console
from rich.table import Table

from milletpay.cards.pan import mask_pan
from milletpay.core.errors import MilletError
from milletpay.core.money import Money
from milletpay.network.iso8583 import FIELDS, RESPONSE_CODES, Message
from milletpay.sim.tap import TapNetwork, TapPlatform, TapResult, TapSetupError

_SHOWN_AS_HEX = frozenset({52, 55})
_MASKED = frozenset({2, 63})


def run_pos_tap(
    database_url: str, phone: str, amount_text: str, merchant_id: str, console: Console
) -> int:
    """Tap once; the exit code: 0 approved, 1 declined, 2 bad input."""
    try:
        amount = Money.parse(amount_text, "CNY")
    except (InvalidOperation, ValueError):
        console.print(f"[red]--amount {amount_text!r} is not an amount in CNY, like 25.00[/red]")
        return 2
    if amount.amount_minor <= 0:
        console.print("[red]--amount must be above 0[/red]")
        return 2
    platform = TapPlatform.open(database_url)
    try:
        directory = TapNetwork(platform, ()).merchants
        merchant = next((m for m in directory.merchants if m.merchant_id == merchant_id), None)
        if merchant is None:
            known = ", ".join(f"{m.merchant_id} ({m.name})" for m in directory.merchants)
            console.print(f"[red]no merchant {merchant_id!r}; the acquirer's: {known}[/red]")
            return 2
        try:
            held = platform.phone_of(phone)
        except (TapSetupError, MilletError) as error:
            console.print(f"[red]{error}[/red]")
            return 2
        terminal = merchant.terminals[0].terminal_id
        console.print(
            f"phone {phone}: token {mask_pan(held.token.number)} of {held.token.bank_code}, "
            f"a new limited-use key; tapping {amount} at {merchant.name}, {merchant.city} "
            f"(terminal {terminal})"
        )
        network = TapNetwork(platform, (held.token.bank_code,))

        async def tap() -> TapResult:
            async with network:
                return await network.tap(held, terminal, amount.amount_minor)

        result = asyncio.run(tap())
        _print(console, result, network)
        return 0 if result.approved else 1
    finally:
        platform.close()


def _print(console: Console, tapped: TapResult, network: TapNetwork) -> None:
    outcome = tapped.outcome
    console.rule("reader ↔ phone (ISO 7816-4 APDUs)")
    console.print(outcome.transcript_text(), highlight=False)
    console.print(f"kernel: {outcome.kind} ({outcome.reason or 'ok'}), CVM {outcome.cvm}")
    result = tapped.result
    if result is None:
        console.print("[yellow]the reader decided without going online[/yellow]")
        return
    console.rule("acquirer → switch (ISO 8583)")
    console.print(_fields(result.request))
    if result.response is not None:
        console.rule("switch → acquirer")
        console.print(_fields(result.response))
    for request, answer in network.issuer_exchanges:
        console.rule("switch → issuer, with the card number")
        console.print(_fields(request))
        if answer is not None:
            console.rule("issuer → switch")
            console.print(_fields(answer))
    code = result.response_code or "--"
    meaning = RESPONSE_CODES.get(code, "no answer")
    colour = "green" if result.approved else "red"
    console.print(
        f"[{colour}]{result.status}: {code} {meaning}"
        f"{f', approval code {result.approval_code}' if result.approval_code else ''}[/{colour}]"
    )


def _fields(message: Message) -> Table:
    table = Table(title=f"MTI {message.mti}", title_justify="left", show_edge=False)
    for name in ("field", "name", "value"):
        table.add_column(name)
    for number, value in sorted(message.fields.items()):
        shown = value.hex().upper() if isinstance(value, bytes) else str(value)
        if number in _MASKED and shown.isdigit() and len(shown) >= 13:
            shown = mask_pan(shown)
        if number in _SHOWN_AS_HEX and not isinstance(value, bytes):
            shown = str(value)
        definition = FIELDS.get(number)
        table.add_row(str(number), definition.name if definition else "", shown)
    return table
