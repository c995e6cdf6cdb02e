"""The demo behind `millet demo`: one day of Millet Pay on the ledger, then the books.

It owns the demo's cast (three users, four institutions), their chart of accounts
and the day's scenes. It drives the ledger only through its public API, prints each
scene and the balances, and ends with `Ledger.verify()`. It never touches the
ledger's tables.

Accounts have fixed ids, so a second run on the same database finds them open
(`exists`); transfer ids come from an `IdGenerator`, so every run plays a new day.
Time is a `ManualClock` started at the current time: a hold is left to expire by
moving the clock past its timeout.

The chart of accounts is the table of `AccountKind`s below (an account's `code` is its
kind). These are Millet Pay's own books: a wallet is what Millet Pay owes its user, the
settlement account is Millet Pay's money at the partner bank.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.table import Table

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.ids import IdGenerator
from milletpay.core.keyring import KeyRing
from milletpay.core.money import CURRENCIES, Money
from milletpay.ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateTransferResult,
    Ledger,
    PendingStatus,
    Transfer,
    TransferFlags,
)
from milletpay.sim.demo_cards import play_banks_scene
from milletpay.sim.demo_commute import play_commute_scene
from milletpay.sim.demo_mall import play_mall_scene
from milletpay.sim.demo_shop import play_shop_scene
from milletpay.sim.demo_wallet import play_wallet_scene
from milletpay.sim.scene import Outcome, scene_line

#: The CNY ledger is numbered by the currency's ISO 4217 numeric code.
LEDGER_CNY = CURRENCIES["CNY"][0]
#: Millet coins (XCN) have a ledger of their own: a transfer never crosses ledgers.
LEDGER_COINS = 900_001
CURRENCY_BY_LEDGER = {LEDGER_CNY: "CNY", LEDGER_COINS: "XCN"}
#: What one coin costs (1 coin = 1 CNY, see `CURRENCIES`).
COIN_PRICE = Money(100, "CNY")
#: The merchant discount rate Millet Pay charges on a payment.
MERCHANT_FEE_RATE = Decimal("0.006")
#: How long a hold lives uncaptured. Short, because the demo moves its clock past it and
#: the ledger's timestamps never go back: a later run on the same database starts there.
HOLD_TIMEOUT_S = 60


class Code(enum.IntEnum):
    """Transfer codes: what a movement of money is for."""

    TOP_UP = 1
    P2P = 2
    PAYMENT = 3
    FEE = 4
    TAP_TO_PAY = 5  # a hold at the till, captured or released later
    COIN_PURCHASE = 6
    COIN_ISSUE = 7


class Side(enum.Enum):
    """Which side an account's balance grows on."""

    DEBIT = "debits − credits"  # what Millet Pay holds (money at a bank) or has issued (coins)
    CREDIT = "credits − debits"  # what Millet Pay owes (wallets, merchants) or has earned


@dataclass(frozen=True)
class AccountKind:
    code: int
    name: str
    ledger: int
    side: Side
    flags: AccountFlags = AccountFlags.NONE


_DEBIT, _CREDIT, _DMNEC = Side.DEBIT, Side.CREDIT, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
# fmt: off
WALLET           = AccountKind(1, "wallet",             LEDGER_CNY,   _CREDIT, _DMNEC)
SETTLEMENT       = AccountKind(2, "settlement at bank", LEDGER_CNY,   _DEBIT)
MERCHANT_PAYABLE = AccountKind(3, "merchant payable",   LEDGER_CNY,   _CREDIT)
FEE_INCOME       = AccountKind(4, "fee income",         LEDGER_CNY,   _CREDIT)
COIN_SALES       = AccountKind(5, "coin sales",         LEDGER_CNY,   _CREDIT)
COINS_ISSUED     = AccountKind(6, "coins issued",       LEDGER_COINS, _DEBIT)
COIN_PURSE       = AccountKind(7, "coin purse",         LEDGER_COINS, _CREDIT, _DMNEC)
# fmt: on


@dataclass(frozen=True)
class DemoAccount:
    """An account of the cast; its id is fixed (kind code × 10,000 + n) so reruns find it."""

    owner: str
    kind: AccountKind
    n: int = 1

    @property
    def id(self) -> int:
        return self.kind.code * 10_000 + self.n


LI_WEI = DemoAccount("Li Wei", WALLET, 1)
WANG_FANG = DemoAccount("Wang Fang", WALLET, 2)
ZHANG_MIN = DemoAccount("Zhang Min", WALLET, 3)
BANK = DemoAccount("Pearl River Bank", SETTLEMENT)
MERCHANT = DemoAccount("Lotus Mart", MERCHANT_PAYABLE)
FEES = DemoAccount("Millet Pay", FEE_INCOME)
SALES = DemoAccount("Millet Pay", COIN_SALES)
ISSUER = DemoAccount("Coin issuer", COINS_ISSUED)
LI_WEI_COINS = DemoAccount("Li Wei", COIN_PURSE, 1)
WANG_FANG_COINS = DemoAccount("Wang Fang", COIN_PURSE, 2)
ZHANG_MIN_COINS = DemoAccount("Zhang Min", COIN_PURSE, 3)
ACCOUNTS = (
    LI_WEI, WANG_FANG, ZHANG_MIN, BANK, MERCHANT, FEES, SALES,
    ISSUER, LI_WEI_COINS, WANG_FANG_COINS, ZHANG_MIN_COINS,
)  # fmt: skip


@dataclass
class Day:
    """What the scenes share: the ledger, the clock, the id source, the hold left open."""

    ledger: Ledger
    clock: ManualClock
    ids: IdGenerator
    open_hold_id: int = 0


# ---- small helpers ----------------------------------------------------------------


def yuan(text: str) -> int:
    return Money.parse(text, "CNY").amount_minor


def show(amount: int, ledger: int = LEDGER_CNY) -> str:
    return str(Money(amount, CURRENCY_BY_LEDGER[ledger]))


def move(
    day: Day,
    debit: DemoAccount,
    credit: DemoAccount,
    amount: int,
    code: Code,
    flags: TransferFlags = TransferFlags.NONE,
    timeout_s: int = 0,
) -> Transfer:
    assert debit.kind.ledger == credit.kind.ledger, "a transfer never crosses ledgers"
    return Transfer(
        day.ids.next_id(), debit.id, credit.id, amount, debit.kind.ledger, int(code), flags,
        timeout_s=timeout_s,
    )  # fmt: skip


def resolve(day: Day, hold: Transfer, flags: TransferFlags, amount: int) -> Transfer:
    """A post (capture `amount`) or void of `hold`."""
    return Transfer(
        day.ids.next_id(), hold.debit_account_id, hold.credit_account_id, amount, hold.ledger,
        hold.code, flags, pending_id=hold.id,
    )  # fmt: skip


def linked(*chain: Transfer) -> list[Transfer]:
    """A linked chain: every transfer but the last carries LINKED."""
    *head, last = chain
    return [dataclasses.replace(t, flags=t.flags | TransferFlags.LINKED) for t in head] + [last]


def send(day: Day, transfers: Sequence[Transfer]) -> tuple[str, ...]:
    return tuple(r.value for r in day.ledger.create_transfers(list(transfers)))


def available(day: Day, wallet: DemoAccount) -> int:
    """What the wallet can spend: credits less posted and held debits."""
    (a,) = day.ledger.lookup_accounts([wallet.id])
    return a.credits_posted - a.debits_posted - a.debits_pending


def outcome(text: str, codes: tuple[str, ...], want: Sequence[str]) -> Outcome:
    return Outcome(text, codes, codes == tuple(str(w) for w in want))


# ---- the scenes, in the order of the day ------------------------------------------


def open_accounts(day: Day) -> Outcome:
    events = [Account(a.id, a.kind.ledger, a.kind.code, a.kind.flags) for a in ACCOUNTS]
    codes = tuple(r.value for r in day.ledger.create_accounts(events))
    users = {a.owner for a in ACCOUNTS if a.kind is WALLET}
    institutions = {a.owner for a in ACCOUNTS} - users
    text = (
        f"{len(users)} users and {len(institutions)} institutions, "
        f"on ledgers {LEDGER_CNY} (CNY) and {LEDGER_COINS} (coins)"
    )
    return Outcome(text, codes, all(c in ("ok", "exists") for c in codes))


TOP_UPS = ((LI_WEI, "800.00"), (WANG_FANG, "500.00"), (ZHANG_MIN, "120.00"))


def top_ups(day: Day) -> Outcome:
    codes = send(day, [move(day, BANK, w, yuan(a), Code.TOP_UP) for w, a in TOP_UPS])
    amounts = ", ".join(f"{w.owner} {show(yuan(a))}" for w, a in TOP_UPS)
    return outcome(f"{BANK.owner} → {amounts}", codes, ["ok"] * len(TOP_UPS))


def p2p(day: Day) -> Outcome:
    amount = yuan("88.00")
    codes = send(day, [move(day, LI_WEI, WANG_FANG, amount, Code.P2P)])
    return outcome(f"Li Wei sends Wang Fang a red envelope of {show(amount)}", codes, ["ok"])


def pay(day: Day, customer: DemoAccount, price: int) -> tuple[list[Transfer], int]:
    """A merchant payment and Millet Pay's fee on it, as one linked chain."""
    fee = Money(price, "CNY").apply_rate(MERCHANT_FEE_RATE).amount_minor
    return linked(
        move(day, customer, MERCHANT, price, Code.PAYMENT),
        move(day, MERCHANT, FEES, fee, Code.FEE),
    ), fee


def merchant_payment(day: Day) -> Outcome:
    chain, fee = pay(day, WANG_FANG, yuan("45.00"))
    text = f"Wang Fang pays {MERCHANT.owner} {show(chain[0].amount)}, fee {show(fee)} (linked)"
    return outcome(text, send(day, chain), ["ok", "ok"])


def hold(day: Day, wallet: DemoAccount, amount: int) -> Transfer:
    return move(
        day, wallet, MERCHANT, amount, Code.TAP_TO_PAY, TransferFlags.PENDING, HOLD_TIMEOUT_S
    )


def hold_posted_in_full(day: Day) -> Outcome:
    h = hold(day, LI_WEI, yuan("36.00"))
    post = resolve(day, h, TransferFlags.POST_PENDING_TRANSFER, AMOUNT_MAX)
    codes = send(day, [h]) + send(day, [post])
    text = f"Li Wei taps to pay at {MERCHANT.owner}: hold {show(h.amount)}, captured in full"
    return outcome(text, codes, ["ok", "ok"])


def hold_posted_in_part(day: Day) -> Outcome:
    h = hold(day, WANG_FANG, yuan("200.00"))
    captured = yuan("152.30")
    post = resolve(day, h, TransferFlags.POST_PENDING_TRANSFER, captured)
    codes = send(day, [h]) + send(day, [post])
    text = (
        f"Wang Fang: hold {show(h.amount)}, captured {show(captured)}, "
        f"{show(h.amount - captured)} released"
    )
    return outcome(text, codes, ["ok", "ok"])


def hold_voided(day: Day) -> Outcome:
    h = hold(day, ZHANG_MIN, yuan("50.00"))
    void = resolve(day, h, TransferFlags.VOID_PENDING_TRANSFER, 0)
    codes = send(day, [h]) + send(day, [void])
    return outcome(f"Zhang Min: hold {show(h.amount)}, order cancelled, voided", codes, ["ok"] * 2)


def hold_left_open(day: Day) -> Outcome:
    h = hold(day, LI_WEI, yuan("30.00"))
    codes = send(day, [h])
    day.open_hold_id = h.id if codes == ("ok",) else 0
    text = f"Li Wei: hold {show(h.amount)} with a {HOLD_TIMEOUT_S} s timeout, never captured"
    return outcome(text, codes, ["ok"])


def buy_coins(day: Day) -> Outcome:
    coins = 60
    price = coins * COIN_PRICE.amount_minor
    chain = linked(
        move(day, ZHANG_MIN, SALES, price, Code.COIN_PURCHASE),
        move(day, ISSUER, ZHANG_MIN_COINS, coins, Code.COIN_ISSUE),
    )
    text = (
        f"Zhang Min buys {show(coins, LEDGER_COINS)} for {show(price)}: "
        f"one leg on each ledger, linked"
    )
    return outcome(text, send(day, chain), ["ok", "ok"])


def refused(day: Day) -> Outcome:
    balance = available(day, ZHANG_MIN)
    chain, _fee = pay(day, ZHANG_MIN, balance + yuan("20.00"))
    text = f"Zhang Min has {show(balance)}, tries to pay {show(chain[0].amount)}"
    want = [CreateTransferResult.EXCEEDS_CREDITS, CreateTransferResult.LINKED_EVENT_FAILED]
    return outcome(text, send(day, chain), want)


SPLIT_BILL = ((WANG_FANG, "20.00"), (ZHANG_MIN, "15.00"))


def retried_batch(day: Day) -> Outcome:
    before = available(day, LI_WEI)
    batch = [move(day, LI_WEI, friend, yuan(a), Code.P2P) for friend, a in SPLIT_BILL]
    codes = send(day, batch) + send(day, batch)  # the answer was lost: the phone resends
    moved = before - available(day, LI_WEI)
    text = f"Li Wei splits a bill, the batch is sent twice: {show(moved)} moves once"
    ok = codes == ("ok", "ok", "exists", "exists") and moved == sum(t.amount for t in batch)
    return Outcome(text, codes, ok)


def expiry(day: Day) -> Outcome:
    found = day.ledger.lookup_transfers([day.open_hold_id]) if day.open_hold_id else []
    if not found:
        return Outcome("the hold left open is missing", ("missing",), False)
    h = found[0]
    wait_ns = max(0, h.timestamp + h.timeout_s * NS_PER_S - day.clock.now_ns()) + NS_PER_S
    day.clock.advance(nanoseconds=wait_ns)
    released = day.ledger.expire_pending()
    status = day.ledger.pending_status(h.id)
    text = (
        f"clock past the timeout, expire_pending() → {released}: Li Wei's {show(h.amount)} is back"
    )
    name = status.name.lower() if status else "missing"
    return Outcome(text, (name,), status is PendingStatus.EXPIRED and released >= 1)


@dataclass(frozen=True)
class Scene:
    label: str
    play: Callable[[Day], Outcome]


SCENES = (
    Scene("accounts", open_accounts),
    Scene("top-up", top_ups),
    Scene("p2p", p2p),
    Scene("payment", merchant_payment),
    Scene("hold", hold_posted_in_full),
    Scene("hold", hold_posted_in_part),
    Scene("hold", hold_voided),
    Scene("hold", hold_left_open),
    Scene("coins", buy_coins),
    Scene("decline", refused),
    Scene("retry", retried_batch),
    Scene("expiry", expiry),
)


# ---- printing ---------------------------------------------------------------------


def balance(a: Account, kind: AccountKind) -> int:
    return (
        a.balance_credit_minus_debit if kind.side is Side.CREDIT else a.balance_debit_minus_credit
    )


def pending(a: Account) -> str:
    sides = (("dr", a.debits_pending), ("cr", a.credits_pending))
    return " ".join(f"{side} {show(amount, a.ledger)}" for side, amount in sides if amount) or "–"


def balances_table(ledger_number: int, accounts: Sequence[Account]) -> Table:
    """One ledger's demo accounts; the footer shows that debits equal credits."""
    cast = {a.id: a for a in ACCOUNTS}
    table = Table(
        title=f"ledger {ledger_number} · {CURRENCY_BY_LEDGER[ledger_number]}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_footer=True,
    )
    debits = sum(a.debits_posted for a in accounts)
    credits = sum(a.credits_posted for a in accounts)
    table.add_column("account", "total")
    table.add_column("kind")
    table.add_column("debits", show(debits, ledger_number), justify="right")
    table.add_column("credits", show(credits, ledger_number), justify="right")
    table.add_column("pending", justify="right")
    table.add_column("balance", justify="right", style="bold")
    for a in accounts:
        owner, kind = cast[a.id].owner, cast[a.id].kind
        table.add_row(
            owner, kind.name, show(a.debits_posted, a.ledger), show(a.credits_posted, a.ledger),
            pending(a), show(balance(a, kind), a.ledger),
        )  # fmt: skip
    return table


def print_books(console: Console, ledger: Ledger) -> None:
    accounts = ledger.lookup_accounts([a.id for a in ACCOUNTS])
    for number in CURRENCY_BY_LEDGER:
        console.print(balances_table(number, [a for a in accounts if a.ledger == number]))
    for side in Side:
        kinds = ", ".join(k.name for k in {a.kind: None for a in ACCOUNTS} if k.side is side)
        console.print(f"[dim]balance = {side.value}: {kinds}[/dim]")
    console.print()


# ---- the day ----------------------------------------------------------------------


def run_demo(database_url: str, console: Console, *, keyring: KeyRing | None = None) -> bool:
    """Play one day on the database, print the books, verify; True when all is well.
    `keyring` is the platform's (the vault's) key ring: from the environment unless
    given, as `millet serve` on the same database would have it."""
    where = sa.make_url(database_url).render_as_string(hide_password=True)
    console.print(f"[bold]Millet Pay[/bold]: a day on {where}\n")
    clock = ManualClock(time.time_ns())
    with Ledger.open(database_url, clock=clock) as ledger:
        day = Day(ledger, clock, IdGenerator(clock))
        failed = 0
        for scene in SCENES:
            result = scene.play(day)
            failed += not result.as_expected
            console.print(scene_line(scene.label, result))
        console.print()
        print_books(console, ledger)
        keyring = keyring or KeyRing.from_environment()
        wallet_scene = play_wallet_scene(ledger, clock, console, keyring)
        failed += sum(not line.as_expected for line in wallet_scene.lines)
        banks_scene = play_banks_scene(ledger, clock, console, database_url, keyring)
        failed += sum(not line.as_expected for line in banks_scene.lines)
        shop_scene = play_shop_scene(database_url, clock, console, keyring)
        failed += sum(not line.as_expected for line in shop_scene.lines)
        commute_lines = play_commute_scene(ledger, clock, console, keyring)
        failed += sum(not line.as_expected for line in commute_lines)
        mall_scene = play_mall_scene(database_url, clock, console, keyring)
        failed += sum(not line.as_expected for line in mall_scene.lines)
        scenes = (
            len(SCENES)
            + len(wallet_scene.lines)
            + len(banks_scene.lines)
            + len(shop_scene.lines)
            + len(commute_lines)
            + len(mall_scene.lines)
        )
        report = ledger.verify()
    summary = (
        f"{report.ledgers} ledgers, {report.accounts:,} accounts, {report.transfers:,} transfers"
    )
    if failed:
        console.print(f"[red]demo: {failed} of {scenes} scenes went wrong[/red]")
    if not report.ok:
        console.print(f"[red]ledger verify: {len(report.problems)} problems[/red] ({summary})")
        for problem in report.problems:
            console.print(f"  - {problem}")
        return False
    console.print(f"[green]ledger verify: ok[/green] ({summary})")
    return not failed
