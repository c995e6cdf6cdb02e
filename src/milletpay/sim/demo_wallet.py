"""The wallet scene of `millet demo`: people sign up, pay each other and buy coins.

It drives `IdentityService`, `WalletService` and `CoinService` on the demo's database,
`Ledger` and clock, with a `SimulatedBankGateway` and simulated SMS, the way the API does.
The amounts it asks for are the tables below; every figure it prints is a service's
answer. It never touches a service's tables.

Each run signs up a new cast: the phone numbers carry a cast number, the first one whose
numbers are all free on the database. Names and ID numbers are sealed with the platform's
key ring (the environment's, as `millet serve` has it), so the server and `millet pos tap`
on the same database know the cast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rich import box
from rich.console import Console
from rich.table import Table

from milletpay.core.clock import Clock
from milletpay.core.keyring import KeyRing
from milletpay.core.money import Money
from milletpay.identity import TIERS, Channel, IdentityService, SimulatedSms, User
from milletpay.identity.phone import mask_phone
from milletpay.ledger import Ledger
from milletpay.risk import DeclineCode, OperationKind
from milletpay.sim import scene
from milletpay.sim.scene import Outcome, scene_line
from milletpay.wallet import (
    FEN_PER_COIN,
    MERCHANTS,
    CoinMerchantNotDigitalGoods,
    CoinOperationKind,
    CoinOutcome,
    CoinService,
    LinkedBankAccount,
    SimulatedBankGateway,
    WalletService,
)
from milletpay.wallet import Outcome as WalletOutcome


def yuan(text: str) -> int:
    return Money.parse(text, "CNY").amount_minor


def cny(amount_fen: int) -> str:
    return str(Money(amount_fen, "CNY"))


def xcn(amount_coins: int) -> str:
    return str(Money(amount_coins, "XCN"))


@dataclass(frozen=True)
class Member:
    """One of the cast: who they are, what they verify, where they bank, what they top up."""

    name: str
    born: str  # YYYYMMDD, digits 7-14 of the ID number
    channels: tuple[Channel, ...]
    tier_level: int  # the tier those channels must reach
    bank_code: str
    top_up_fen: int


_F2F, _CARD, _POLICE = Channel.FACE_TO_FACE, Channel.BANK_CARD, Channel.PUBLIC_SECURITY_ID
_TELECOM, _SOCIAL = Channel.TELECOM, Channel.SOCIAL_SECURITY
# fmt: off
CHEN_JING = Member("Chen Jing", "19880312", (_F2F,),                             3, "ICBC", 3000_00)
LIU_YANG  = Member("Liu Yang",  "19950721", (_CARD, _POLICE, _TELECOM),          2, "CCB",  2000_00)
SUN_MEI   = Member("Sun Mei",   "19700105", (_CARD, _POLICE, _TELECOM, _SOCIAL), 2, "PRB",   800_00)
ZHAO_LEI  = Member("Zhao Lei",  "20010930", (_CARD,),                            1, "CMB",  1500_00)
# fmt: on
CAST = (CHEN_JING, LIU_YANG, SUN_MEI, ZHAO_LEI)

#: A cast's phone numbers are 1380 + cast number (4 digits) + member (3 digits).
#: Each member's bank account holds this many top-ups when the scene opens it.
BANK_OPENING_TOP_UPS = 10
#: Zhao Lei (Class I) pays Liu Yang this much, again and again, until the tier limit
#: declines a payment; never more than `CLASS_I_PAYMENTS_MAX` times.
CLASS_I_PAYMENT_FEN = yuan("400.00")
CLASS_I_PAYMENTS_MAX = 5
RED_ENVELOPE_FEN = yuan("88.00")
WITHDRAWAL_FEN = yuan("500.00")
COINS_FROM_BALANCE = 60
COINS_BY_CARD = 120
COIN_SPENDS = ((CHEN_JING, "app_store", 45), (SUN_MEI, "dragon_quest", 30))
COIN_SPEND_REFUSED = (SUN_MEI, "lotus_mart", 20)
RETRIED_P2P_FEN = yuan("66.00")
#: The history shown at the end: Zhao Lei's, newest first, at most this many lines.
HISTORY_SHOWN = 10

Answer = WalletOutcome | CoinOutcome
AnswerT = TypeVar("AnswerT", WalletOutcome, CoinOutcome)


@dataclass
class WalletDay:
    """What the steps share: the services, the cast's users and links, every answer."""

    identity: IdentityService
    wallet: WalletService
    coins: CoinService
    bank: SimulatedBankGateway
    cast_number: int = 0
    users: dict[Member, User] = field(default_factory=dict)
    links: dict[Member, LinkedBankAccount] = field(default_factory=dict)
    answers: dict[int, Answer] = field(default_factory=dict)  # by operation id: a retry once

    def keep(self, answer: AnswerT) -> AnswerT:
        self.answers[answer.operation_id] = answer
        return answer

    def phone(self, member: Member) -> str:
        return mask_phone(self.users[member].phone)


@dataclass(frozen=True)
class WalletScene:
    """What the scene leaves: its lines, the cast's user ids and every service answer."""

    lines: tuple[Outcome, ...]
    user_ids: tuple[int, ...]
    answers: tuple[Answer, ...]


# ---- signing up ---------------------------------------------------------------------


def register_cast(day: WalletDay) -> None:
    """Register the cast under the first cast number whose phone numbers are all free."""
    day.cast_number, day.users = scene.register_cast(day.identity, CAST, "1380")


def verify_channels(day: WalletDay) -> Outcome:
    reached = []
    for member in CAST:
        user_id = day.users[member].id
        for channel in member.channels:
            day.identity.verify_channel(user_id, channel)
        reached.append(day.identity.current_tier(user_id))
    as_expected = [t.level if t else 0 for t in reached] == [m.tier_level for m in CAST]
    names = tuple(t.name if t else "none" for t in reached)
    text = f"{len(CAST)} users registered with phone, real name and ID number; channels verified"
    return Outcome(text, names, as_expected)


# ---- the steps, in the order of the day ----------------------------------------------


def code_of(answer: Answer) -> str:
    return answer.decline_code or answer.status.value


def bank_account_number(cast_number: int, index: int) -> str:
    return f"6222{cast_number:04d}{index + 1:08d}"


def link_and_top_up(day: WalletDay) -> list[Outcome]:
    lines = []
    for i, member in enumerate(CAST):
        user, number = day.users[member], bank_account_number(day.cast_number, i)
        opening_fen = BANK_OPENING_TOP_UPS * member.top_up_fen
        day.bank.open_account(member.bank_code, number, member.name, opening_fen)
        link = day.wallet.link_bank_account(user.id, member.bank_code, number)
        day.links[member] = link
        answer = day.keep(day.wallet.top_up(user.id, link.id, member.top_up_fen, "top-up-1"))
        text = (
            f"{member.name} links {link.bank_code} {link.account_masked}, "
            f"tops up {cny(answer.amount_fen)}"
        )
        lines.append(Outcome(text, ("linked", code_of(answer)), answer.approved))
    return lines


def class_i_until_declined(day: WalletDay) -> list[Outcome]:
    payer, payee = day.users[ZHAO_LEI], day.users[LIU_YANG]
    tier = day.identity.current_tier(payer.id)
    assert tier is not None
    lines = []
    for n in range(1, CLASS_I_PAYMENTS_MAX + 1):
        answer = day.keep(day.wallet.p2p(payer.id, payee.phone, CLASS_I_PAYMENT_FEN, f"pay-{n}"))
        text = f"{payer.real_name} ({tier.name}) pays {payee.real_name} {cny(answer.amount_fen)}"
        if answer.approved:
            lines.append(Outcome(f"{text} at {day.phone(LIU_YANG)}", (code_of(answer),), True))
            continue
        assert answer.limit is not None and answer.remaining is not None
        text += (
            f": {tier.period.value} limit {cny(answer.limit)}, {cny(answer.remaining)} remaining"
        )
        declined_by_tier = (
            answer.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
            and answer.limit == tier.limit_fen
        )
        lines.append(Outcome(text, (code_of(answer),), declined_by_tier))
        rest = day.keep(day.wallet.p2p(payer.id, payee.phone, answer.remaining, "pay-rest"))
        text = f"{payer.real_name} pays the {cny(rest.amount_fen)} that remains"
        lines.append(Outcome(text, (code_of(rest),), rest.approved))
        return lines
    lines.append(Outcome(f"no decline in {CLASS_I_PAYMENTS_MAX} payments", ("none",), False))
    return lines


def red_envelope(day: WalletDay) -> list[Outcome]:
    sender, recipient = day.users[CHEN_JING], day.users[SUN_MEI]
    answer = day.keep(day.wallet.p2p(sender.id, recipient.phone, RED_ENVELOPE_FEN, "envelope"))
    text = (
        f"{sender.real_name} sends {recipient.real_name} a red envelope of "
        f"{cny(answer.amount_fen)} at {day.phone(SUN_MEI)}"
    )
    return [Outcome(text, (code_of(answer),), answer.approved)]


def withdrawal(day: WalletDay) -> list[Outcome]:
    user, link = day.users[LIU_YANG], day.links[LIU_YANG]
    answer = day.keep(day.wallet.withdraw(user.id, link.id, WITHDRAWAL_FEN, "withdraw-1"))
    text = (
        f"{user.real_name} withdraws {cny(answer.amount_fen)} to "
        f"{link.bank_code} {link.account_masked}"
    )
    return [Outcome(text, (code_of(answer),), answer.approved)]


def coin_purchases(day: WalletDay) -> list[Outcome]:
    buyer = day.users[SUN_MEI]
    answer = day.keep(day.coins.buy_with_balance(buyer.id, COINS_FROM_BALANCE, "coins-1"))
    lines = [
        Outcome(
            f"{buyer.real_name} buys {xcn(answer.amount_coins)} from the wallet balance",
            (code_of(answer),),
            answer.approved,
        )
    ]
    buyer, link = day.users[CHEN_JING], day.links[CHEN_JING]
    answer = day.keep(day.coins.buy_with_card(buyer.id, link.id, COINS_BY_CARD, "coins-1"))
    text = f"{buyer.real_name} buys {xcn(answer.amount_coins)} by card at {link.bank_code}"
    lines.append(Outcome(text, (code_of(answer),), answer.approved))
    return lines


def coin_spends(day: WalletDay) -> list[Outcome]:
    lines = []
    for n, (member, merchant_id, amount) in enumerate(COIN_SPENDS, start=1):
        user, merchant = day.users[member], MERCHANTS[merchant_id]
        answer = day.keep(day.coins.spend(user.id, merchant_id, amount, f"spend-{n}"))
        text = (
            f"{user.real_name} spends {xcn(answer.amount_coins)} at {merchant.name} "
            f"({merchant.category})"
        )
        lines.append(Outcome(text, (code_of(answer),), answer.approved))
    member, merchant_id, amount = COIN_SPEND_REFUSED
    user, merchant = day.users[member], MERCHANTS[merchant_id]
    text = f"{user.real_name} tries to pay {merchant.name} ({merchant.category}) in coins"
    try:
        day.keep(day.coins.spend(user.id, merchant_id, amount, "spend-refused"))
    except CoinMerchantNotDigitalGoods as refusal:
        return [*lines, Outcome(text, (refusal.code,), True)]
    return [*lines, Outcome(text, ("accepted",), False)]


def retried_p2p(day: WalletDay) -> list[Outcome]:
    sender, recipient = day.users[LIU_YANG], day.users[CHEN_JING]
    before_fen = day.wallet.balance(sender.id).posted_fen
    first, again = (
        day.keep(day.wallet.p2p(sender.id, recipient.phone, RETRIED_P2P_FEN, "lunch"))
        for _ in range(2)  # the answer was lost: the phone sends again with the same key
    )
    moved_fen = before_fen - day.wallet.balance(sender.id).posted_fen
    text = (
        f"{sender.real_name} sends {recipient.real_name} {cny(first.amount_fen)}, sent twice "
        f"with one key: one operation, {cny(moved_fen)} moves"
    )
    as_expected = first == again and first.approved and moved_fen == first.amount_fen
    return [Outcome(text, (code_of(first), code_of(again)), as_expected)]


@dataclass(frozen=True)
class Step:
    label: str
    play: Callable[[WalletDay], list[Outcome]]


STEPS = (
    Step("bank", link_and_top_up),
    Step("limit", class_i_until_declined),
    Step("p2p", red_envelope),
    Step("withdraw", withdrawal),
    Step("coins", coin_purchases),
    Step("coins", coin_spends),
    Step("retry", retried_p2p),
)


# ---- the books ----------------------------------------------------------------------


def money_in_wallets(day: WalletDay) -> Outcome:
    """The wallets hold what came in from banks, less what went out to banks and to coins:
    P2P only moves money between them."""
    wallets_fen = sum(day.wallet.balance(u.id).posted_fen for u in day.users.values())
    done = [a for a in day.answers.values() if a.approved]
    top_ups = sum(a.amount_fen for a in done if a.kind is OperationKind.TOP_UP)
    withdrawn = sum(a.amount_fen for a in done if a.kind is OperationKind.WITHDRAW)
    coins = sum(
        a.amount_coins * FEN_PER_COIN
        for a in done
        if a.kind is CoinOperationKind.PURCHASE_FROM_BALANCE
    )
    text = (
        f"wallets hold {cny(wallets_fen)} = top-ups {cny(top_ups)} − withdrawals "
        f"{cny(withdrawn)} − coins from balance {cny(coins)}"
    )
    balanced = wallets_fen == top_ups - withdrawn - coins
    return Outcome(text, ("balanced" if balanced else "off",), balanced)


def coin_liability(day: WalletDay) -> Outcome:
    check = day.coins.coin_liability_check()
    text = (
        f"coins outstanding {xcn(check.liability_coins)}, every purse on the database "
        f"together {xcn(check.purses_coins)}"
    )
    return Outcome(text, ("balanced" if check.balanced else "off",), check.balanced)


# ---- printing -----------------------------------------------------------------------


def tiers_table() -> Table:
    table = Table(title="KYC tiers", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("tier")
    table.add_column("channels", justify="right")
    table.add_column("or in person")
    table.add_column("balance payments", justify="right")
    table.add_column("per")
    table.add_column("invests")
    for t in TIERS:
        yes_no = ("no", "yes")
        table.add_row(
            t.name, str(t.channels_min), yes_no[t.face_to_face_suffices], cny(t.limit_fen),
            t.period.value.replace("_", " "), yes_no[t.may_invest],
        )  # fmt: skip
    return table


def verified_text(channels: frozenset[Channel]) -> str:
    remote = len(channels - {Channel.FACE_TO_FACE})
    parts = [f"{remote} remote"] if remote else []
    return " + ".join([*parts, *(["face to face"] if Channel.FACE_TO_FACE in channels else [])])


def users_table(day: WalletDay) -> Table:
    table = Table(title="users", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("user", "phone", "ID number", "verified", "tier"):
        table.add_column(name)
    for user in day.users.values():
        tier = day.identity.current_tier(user.id)
        table.add_row(
            user.real_name, mask_phone(user.phone), user.national_id_masked,
            verified_text(day.identity.verified_channels(user.id)), tier.name if tier else "–",
        )  # fmt: skip
    return table


def wallets_table(day: WalletDay) -> Table:
    table = Table(
        title="wallets at the end of the day", title_justify="left", box=box.SIMPLE_HEAD,
        show_footer=True,
    )  # fmt: skip
    balances = {u.id: day.wallet.balance(u.id).posted_fen for u in day.users.values()}
    coins = {u.id: day.coins.coins(u.id) for u in day.users.values()}
    table.add_column("user", "total")
    table.add_column("tier")
    table.add_column("balance", cny(sum(balances.values())), justify="right", style="bold")
    table.add_column("coins", xcn(sum(coins.values())), justify="right")
    for user in day.users.values():
        tier = day.identity.current_tier(user.id)
        table.add_row(
            user.real_name, tier.name if tier else "–", cny(balances[user.id]),
            xcn(coins[user.id]),
        )  # fmt: skip
    return table


def history_table(day: WalletDay, member: Member) -> Table:
    user = day.users[member]
    page = day.wallet.history(user.id, limit=HISTORY_SHOWN)
    table = Table(
        title=f"history of {user.real_name}, newest first", title_justify="left",
        box=box.SIMPLE_HEAD,
    )  # fmt: skip
    table.add_column("operation")
    table.add_column("amount", justify="right")
    table.add_column("status")
    for item in page.items:
        sign = "" if item.decline_code else "+" if item.incoming else "−"  # a decline moved nothing
        table.add_row(
            item.kind.value, f"{sign}{cny(item.amount_fen)}", item.decline_code or item.status
        )
    return table


# ---- the scene ----------------------------------------------------------------------


def play_wallet_scene(
    ledger: Ledger, clock: Clock, console: Console, keyring: KeyRing
) -> WalletScene:
    """Sign the cast up, play the steps, print the tables and check the books."""
    sms, bank = SimulatedSms(), SimulatedBankGateway()
    identity = IdentityService(ledger.engine, keyring, clock, sms)
    wallet = WalletService(ledger, identity, ledger.engine, clock, bank)
    coins = CoinService(ledger, wallet, identity, ledger.engine, clock, bank)
    day = WalletDay(identity, wallet, coins, bank)
    register_cast(day)
    console.print(
        f"[bold]Wallets[/bold]: {len(CAST)} people sign up through the identity, wallet and "
        f"coin services (cast {day.cast_number} on this database)\n"
    )
    console.print(tiers_table())
    lines = [verify_channels(day)]
    console.print(users_table(day))
    console.print(scene_line("kyc", lines[0]))
    for step in STEPS:
        for line in step.play(day):
            lines.append(line)
            console.print(scene_line(step.label, line))
    console.print()
    console.print(wallets_table(day))
    console.print(history_table(day, ZHAO_LEI))
    for label, check in (("books", money_in_wallets), ("coins", coin_liability)):
        lines.append(check(day))
        console.print(scene_line(label, lines[-1]))
    console.print()
    user_ids = tuple(u.id for u in day.users.values())
    return WalletScene(tuple(lines), user_ids, tuple(day.answers.values()))
