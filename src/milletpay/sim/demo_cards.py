"""The banks scene of `millet demo`: people add bank cards from several partner banks to
their phones as tokens, and one phone is lost.

It drives the partner banks (`Banks`, on the demo's database, with `GeneratedBankKeys`),
the `PanVault` and the `TokenService` the way the API does: each card is sealed to the
token service's key as a phone seals it, the issuer decides green, yellow (a step-up
code by SMS to the phone on file, read back from the simulated SMS) or red. Every figure
it prints is a service's answer. At the end it looks for every card number it issued in
the demo's databases outside the vault's sealed rows: on SQLite, byte by byte in the
platform's and the banks' files (the WAL included); on PostgreSQL, in every row.

The key ring is the platform's (`KeyRing.from_environment()`, what `millet serve` uses
on the same database): the vault remembers the key its rows were fingerprinted with, so
a key made for the run would lock the API out of the vault. It never prints a PAN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.table import Table

from milletpay.banks import Banks, GeneratedBankKeys, IssuedCard
from milletpay.cards import (
    Expiry,
    PanVault,
    ProvisionAnswer,
    ProvisionRequest,
    StepUpStatus,
    TokenDomain,
    TokenService,
    TokenState,
    seal_card_for_tsp,
)
from milletpay.core.clock import Clock
from milletpay.core.keyring import KeyRing
from milletpay.identity import IdentityService, SimulatedSms, User
from milletpay.identity.phone import mask_phone
from milletpay.ledger import Ledger
from milletpay.sim import scene
from milletpay.sim.scene import Outcome, scene_line
from milletpay.store.engine import sqlite_path

CARD_PIN = "271828"
#: The phone on file at the bank of a cardholder who changed numbers since.
OLD_PHONE = "+8613900139000"
STEP_UP_CODE_DIGITS = 6


@dataclass(frozen=True)
class Cardholder:
    """One of the cast: their bank, whether the bank has their wallet phone, what they
    add and how the issuer should answer."""

    name: str
    born: str  # YYYYMMDD, digits 7-14 of the ID number
    bank_code: str
    domains: tuple[TokenDomain, ...]
    phone_on_file_is_wallet_phone: bool = True
    wrong_cvn2: bool = False


_NFC, _APP = TokenDomain.CONTACTLESS, TokenDomain.IN_APP
# fmt: off
HUANG_LI = Cardholder("Huang Li", "19900214", "ICBC", (_NFC,))
XU_MING  = Cardholder("Xu Ming",  "19851103", "CCB",  (_NFC, _APP))
GAO_YAN  = Cardholder("Gao Yan",  "19780620", "BOC",  (_NFC,), phone_on_file_is_wallet_phone=False)
MA_JUN   = Cardholder("Ma Jun",   "19990909", "ICBC", (_NFC,), wrong_cvn2=True)
# fmt: on
CARDHOLDERS = (HUANG_LI, XU_MING, GAO_YAN, MA_JUN)
#: Whose phone is reported lost once every card is added.
LOSES_PHONE = XU_MING


@dataclass
class CardDay:
    """What the steps share: the services, the cast, their cards and every answer."""

    identity: IdentityService
    banks: Banks
    vault: PanVault
    tsp: TokenService
    sms: SimulatedSms
    cast_number: int = 0
    users: dict[Cardholder, User] = field(default_factory=dict)
    cards: dict[Cardholder, IssuedCard] = field(default_factory=dict)
    answers: list[ProvisionAnswer] = field(default_factory=list)

    def device(self, holder: Cardholder) -> str:
        return f"demo-phone-{self.cast_number}-{CARDHOLDERS.index(holder) + 1}"


@dataclass(frozen=True)
class BanksScene:
    """What the scene leaves: its lines, tokens by bank and state, and the leak scan."""

    lines: tuple[Outcome, ...]
    tokens_by_bank: dict[str, Counter[str]]
    pans_issued: int
    pans_vaulted: int
    pans_in_clear: int


# ---- the cast and their cards -------------------------------------------------------


def register_cast(day: CardDay) -> None:
    """Register the cast under the first cast number whose phone numbers are all free."""
    day.cast_number, day.users = scene.register_cast(day.identity, CARDHOLDERS, "1370")


def issue_cards(day: CardDay) -> None:
    """Each cardholder's bank opens them a debit account and issues its card."""
    for holder in CARDHOLDERS:
        bank = day.banks.bank(holder.bank_code)
        wallet_phone = day.users[holder].phone
        on_file = wallet_phone if holder.phone_on_file_is_wallet_phone else OLD_PHONE
        customer = bank.open_customer(holder.name, phone=on_file)
        account = bank.open_account(customer, "debit")
        day.cards[holder] = bank.issue_card(account.account.id, pin=CARD_PIN)


def envelope(day: CardDay, card: IssuedCard, cvn2: str) -> str:
    """The card as the phone sends it: sealed to the token service's key."""
    expiry = Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))
    return seal_card_for_tsp(day.tsp.public_key(), card.pan, expiry, cvn2)


def wrong_cvn2(card: IssuedCard) -> str:
    return f"{(int(card.cvn2) + 1) % 1000:03d}"


# ---- the steps ----------------------------------------------------------------------


def add_cards(day: CardDay) -> list[Outcome]:
    """Every cardholder adds their card, in each of their domains."""
    lines = []
    for holder in CARDHOLDERS:
        card, user = day.cards[holder], day.users[holder]
        cvn2 = wrong_cvn2(card) if holder.wrong_cvn2 else card.cvn2
        for domain in holder.domains:
            request = ProvisionRequest(
                user.id, day.device(holder), domain, user.phone, envelope(day, card, cvn2)
            )
            answer = day.tsp.provision(request)
            day.answers.append(answer)
            lines.append(provision_line(day, holder, domain, answer))
    return lines


def provision_line(
    day: CardDay, holder: Cardholder, domain: TokenDomain, answer: ProvisionAnswer
) -> Outcome:
    card = day.cards[holder]
    text = f"{holder.name} adds {holder.bank_code} {card.pan_masked} ({domain})"
    if answer.token is None:
        reason = f"{answer.decline}: {answer.reason}"
        return Outcome(f"{text}: red, declined", (reason,), holder.wrong_cvn2)
    token = answer.token
    if answer.step_up is not None:
        text += f": yellow, code texted to {answer.phone_masked}"
        expected = not holder.phone_on_file_is_wallet_phone
        return Outcome(text, (str(answer.outcome), str(token.state)), expected)
    text += f": green, token …{token.number[-4:]}"
    expected = holder.phone_on_file_is_wallet_phone and not holder.wrong_cvn2
    return Outcome(text, (str(answer.outcome), str(token.state)), expected)


def step_ups(day: CardDay) -> list[Outcome]:
    """Each token waiting for a step-up gets the code the bank's SMS carried."""
    lines = []
    for answer in day.answers:
        if answer.step_up is None or answer.token is None:
            continue
        code = last_code(day.sms, OLD_PHONE)
        confirmed = day.tsp.confirm_step_up(answer.token.id, code)
        done = confirmed.status is StepUpStatus.ACTIVATED and confirmed.token is not None
        text = f"the code from {mask_phone(OLD_PHONE)} confirmed: token …"
        text += answer.token.number[-4:]
        lines.append(Outcome(text, (str(confirmed.status),), done))
    return lines


def last_code(sms: SimulatedSms, phone: str) -> str:
    text = sms.messages_to(phone)[-1].text
    return next(w for w in text.split() if w.isdigit() and len(w) == STEP_UP_CODE_DIGITS)


def lost_phone(day: CardDay) -> list[Outcome]:
    """A phone is reported lost: every token on it is suspended by the device."""
    holder = LOSES_PHONE
    change = day.tsp.on_device_lost(day.users[holder].id, day.device(holder))
    states = tuple(str(t.state) for t in change.changed)
    text = f"{holder.name} reports the phone lost: {len(change.changed)} tokens suspended"
    ok = bool(states) and set(states) == {str(TokenState.SUSPENDED)} and not change.refused
    return [Outcome(text, states or ("none",), ok)]


# ---- the report ---------------------------------------------------------------------


def tokens_by_bank(day: CardDay) -> dict[str, Counter[str]]:
    """The cast's tokens by bank and state, as the token service lists them."""
    found: dict[str, Counter[str]] = {}
    for user in day.users.values():
        for token in day.tsp.tokens_of(user.id):
            found.setdefault(token.bank_code, Counter())[str(token.state)] += 1
    return found


def tokens_table(day: CardDay, counts: dict[str, Counter[str]]) -> Table:
    states = [str(s) for s in TokenState]
    table = Table(title="Tokens per bank", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("bank")
    for state in states:
        table.add_column(state, justify="right")
    for code in sorted(counts):
        name = day.banks.bank(code).spec.name
        table.add_row(f"{code} ({name})", *(str(counts[code][s]) for s in states))
    return table


def database_files(database_url: str, bank_codes: Iterable[str]) -> list[Path]:
    """The platform's SQLite file and each bank's, with their WAL and shared memory."""
    main = sqlite_path(database_url)
    assert main is not None
    stems = [main] + [
        main.with_name(f"{main.stem}-bank-{code.lower()}{main.suffix or '.db'}")
        for code in bank_codes
    ]
    return [p for base in stems for p in (base, Path(f"{base}-wal")) if p.exists()]


def pans_in_files(paths: Iterable[Path], pans: Iterable[str]) -> int:
    needles = [pan.encode("ascii") for pan in pans]
    return sum(1 for path in paths if any(n in path.read_bytes() for n in needles))


def _rows_as_bytes(engine: sa.Engine) -> Iterator[bytes]:
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for name in inspector.get_table_names():
            table = sa.table(name, *(sa.column(c["name"]) for c in inspector.get_columns(name)))
            for row in conn.execute(sa.select(table)):
                yield repr(tuple(row)).encode("utf-8", "backslashreplace")


def pans_in_rows(engines: Iterable[sa.Engine], pans: Iterable[str]) -> int:
    needles = [pan.encode("ascii") for pan in pans]
    return sum(1 for e in engines for row in _rows_as_bytes(e) if any(n in row for n in needles))


def leak_check(day: CardDay, database_url: str, engine: sa.Engine) -> tuple[Outcome, int, int]:
    """Where the scene's card numbers are: in the vault (sealed), and nowhere in clear."""
    pans = [card.pan for card in day.cards.values()]
    vaulted = sum(1 for pan in pans if day.vault.find(pan) is not None)
    codes = sorted({h.bank_code for h in CARDHOLDERS})
    if sqlite_path(database_url) is not None:
        where = "platform and bank database files"
        found = pans_in_files(database_files(database_url, codes), pans)
    else:
        where = "platform and bank schemas, every row"
        engines = [engine, *(day.banks.bank(code).engine for code in codes)]
        found = pans_in_rows(engines, pans)
    text = (
        f"{len(pans)} card numbers issued, {vaulted} sealed in the vault; "
        f"in clear in the {where}: {found}"
    )
    return Outcome(text, ("none in clear" if not found else "leaked",), not found), vaulted, found


# ---- the scene ----------------------------------------------------------------------


def play_banks_scene(
    ledger: Ledger, clock: Clock, console: Console, database_url: str, keyring: KeyRing
) -> BanksScene:
    """Issue the cast's cards, add them as tokens, lose a phone, print the report."""
    sms = SimulatedSms()
    banks = Banks(database_url, keyring, GeneratedBankKeys(), clock)
    try:
        vault = PanVault(ledger.engine, keyring, clock)
        tsp = TokenService(ledger.engine, vault, keyring, banks, sms, clock)
        identity = IdentityService(ledger.engine, keyring, clock, sms)
        day = CardDay(identity, banks, vault, tsp, sms)
        register_cast(day)
        issue_cards(day)
        banks_named = len({h.bank_code for h in CARDHOLDERS})
        console.print(
            f"[bold]Cards[/bold]: {len(CARDHOLDERS)} people add cards from {banks_named} "
            f"partner banks through the token service (cast {day.cast_number})\n"
        )
        lines: list[Outcome] = []
        for label, step in (("add", add_cards), ("step-up", step_ups), ("lost", lost_phone)):
            for line in step(day):
                lines.append(line)
                console.print(scene_line(label, line))
        console.print()
        counts = tokens_by_bank(day)
        console.print(tokens_table(day, counts))
        check, vaulted, found = leak_check(day, database_url, ledger.engine)
        lines.append(check)
        console.print(scene_line("pans", check))
        console.print()
        return BanksScene(tuple(lines), counts, len(day.cards), vaulted, found)
    finally:
        banks.close()
