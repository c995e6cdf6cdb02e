"""The shopping scene of `millet demo`: people tap their phones at the acquirer's shops.

Each shopper's phone holds a debit card of a partner bank as a contactless token with a
limited-use key (`sim.tap`). Their taps go through the reader's kernel, the acquirer,
the card network's switch and their bank's issuer host, over the real protocols on
127.0.0.1: approvals at several merchants, a decline for insufficient funds, a large
amount the reader will take only after the fingerprint, a reversal when a bank answers
too late, and the day's completions for the merchants that send them in a batch. It ends
with every bank's books verified. Every figure it prints is an answer of the parties.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final

from rich.console import Console
from rich.table import Table

from milletpay.core.clock import Clock
from milletpay.core.keyring import KeyRing
from milletpay.sim.scene import Outcome, register_cast, scene_line
from milletpay.sim.tap import TapNetwork, TapPhone, TapPlatform, TapResult


@dataclass(frozen=True)
class Shopper:
    name: str
    born: str  # YYYYMMDD
    bank_code: str
    deposit_fen: int


# fmt: off
ZHOU_XIN = Shopper("Zhou Xin", "19920318", "ICBC", 800_000)
WU_LAN   = Shopper("Wu Lan",   "19870725", "CCB",  300_000)
QIAN_HAO = Shopper("Qian Hao", "20010101", "ABC",  2_000)
# fmt: on
SHOPPERS: Final = (ZHOU_XIN, WU_LAN, QIAN_HAO)
SUPERMARKET, COFFEE, RESTAURANT, ELECTRONICS, TEA_HOUSE = (
    "BJ541101", "SH581401", "HZ581201", "SZ573201", "GZ581401",
)  # fmt: skip
#: A bank this slow answers after the acquirer gave up: the tap is reversed.
SLOW_ISSUER_S: Final = 2.5
#: Generous: a tap on a busy machine must not time out but for the slowed bank.
ACQUIRER_TIMEOUT_S: Final = 1.5


@dataclass(frozen=True)
class ShopScene:
    lines: tuple[Outcome, ...]
    taps: tuple[TapResult, ...]


@dataclass
class _Day:
    network: TapNetwork
    phones: dict[Shopper, TapPhone]
    clock: Clock
    taps: list[TapResult] = field(default_factory=list)
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    async def tap(self, who: Shopper, terminal: str, amount_fen: int) -> TapResult:
        tapped = await self.network.tap(self.phones[who], terminal, amount_fen)
        self.taps.append(tapped)
        merchant, _ = self.network.merchants.terminal(terminal)
        result = tapped.result
        answer = (
            str(tapped.outcome.reason or tapped.outcome.kind)
            if result is None
            else f"{result.status} {result.response_code or ''}".strip()
        )
        self.rows.append((who.name, merchant.name, _cny(amount_fen), who.bank_code, answer))
        return tapped


def play_shop_scene(
    database_url: str, clock: Clock, console: Console, keyring: KeyRing
) -> ShopScene:
    platform = TapPlatform.open(database_url, clock=clock, keyring=keyring)
    # The late answers of the timeout are logged as warnings by the link; in the demo
    # they are the point of the step, and the step says so.
    link_log = logging.getLogger("milletpay.network.link")
    level = link_log.level
    link_log.setLevel(logging.ERROR)
    try:
        cast_number, users = register_cast(platform.identity, SHOPPERS, "1391")
        phones = {
            who: platform.phone_of(
                users[who].phone, bank_code=who.bank_code, deposit_fen=who.deposit_fen
            )
            for who in SHOPPERS
        }
        console.print(
            f"[bold]Shopping[/bold]: {len(SHOPPERS)} people tap phones at shops "
            f"(cast {cast_number})\n"
        )
        codes = tuple(sorted({who.bank_code for who in SHOPPERS}))
        lines = asyncio.run(_shop(platform, phones, clock, codes, console))
        books = [(code, platform.banks.bank(code).verify()) for code in codes]
        ok = all(report.ok for _, report in books)
        text = "every bank's books verified: " + ", ".join(code for code, _ in books)
        lines.append(Outcome(text, ("ok" if ok else "problems",), ok))
        console.print(scene_line("books", lines[-1]))
        console.print()
        return ShopScene(tuple(lines), ())
    finally:
        link_log.setLevel(level)
        platform.close()


async def _shop(
    platform: TapPlatform,
    phones: dict[Shopper, TapPhone],
    clock: Clock,
    codes: tuple[str, ...],
    console: Console,
) -> list[Outcome]:
    lines: list[Outcome] = []

    def show(label: str, line: Outcome) -> None:
        lines.append(line)
        console.print(scene_line(label, line))

    async with TapNetwork(platform, codes, acquirer_timeout_s=ACQUIRER_TIMEOUT_S) as network:
        day = _Day(network, phones, clock)
        for who, terminal, amount in (
            (ZHOU_XIN, SUPERMARKET, 8_650),
            (WU_LAN, COFFEE, 3_800),
            (ZHOU_XIN, RESTAURANT, 23_600),
        ):
            tapped = await day.tap(who, terminal, amount)
            show("tap", _line(day, tapped, f"{who.name} pays {_cny(amount)}", "approved"))
        tapped = await day.tap(QIAN_HAO, TEA_HOUSE, 4_500)
        show("decline", _line(day, tapped, f"{QIAN_HAO.name}: 45.00 on 20.00", "declined"))
        first = await day.tap(ZHOU_XIN, ELECTRONICS, 329_900)
        phones[ZHOU_XIN].touch_fingerprint(clock.now_ns())
        second = await day.tap(ZHOU_XIN, ELECTRONICS, 329_900)
        both = (first.outcome.reason or str(first.outcome.kind), _answer(second))
        as_expected = first.result is None and second.approved
        show("cdcvm", Outcome("3,299.00: see phone, fingerprint, tap again", both, as_expected))
        network.issuer_delay_s[WU_LAN.bank_code] = SLOW_ISSUER_S
        late = await day.tap(WU_LAN, RESTAURANT, 12_800)
        network.issuer_delay_s.clear()
        await asyncio.sleep(SLOW_ISSUER_S)  # the late answer and the reversal reach the bank
        show("timeout", _line(day, late, "CCB answers late: reversed", "timed_out_reversed"))
        assert network.acquirer is not None
        batch = await network.acquirer.upload_batch()
        done = batch.completed == 2 and batch.completions_pending == 0
        text = f"end of day: {batch.advices_sent} completions (0220) for the dual-message shops"
        show("batch", Outcome(text, (f"completed ×{batch.completed}",), done))
    console.print()
    console.print(_taps_table(day))
    return lines


def _answer(tapped: TapResult) -> str:
    return "read only" if tapped.result is None else str(tapped.result.status)


def _line(day: _Day, tapped: TapResult, text: str, expected: str) -> Outcome:
    answer = _answer(tapped)
    return Outcome(text, (answer,), answer == expected)


def _taps_table(day: _Day) -> Table:
    table = Table(title="Taps", title_justify="left")
    for name in ("who", "where", "amount", "bank", "answer"):
        table.add_column(name, justify="right" if name == "amount" else "left")
    for row in day.rows:
        table.add_row(*row)
    return table


def _cny(amount_fen: int) -> str:
    return f"{amount_fen // 100:,}.{amount_fen % 100:02d}"
