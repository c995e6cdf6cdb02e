"""Fixtures for the switch tests: the platform's database (token service, vault,
limited-use keys), the banks' own books and the network's, on each database engine; and
`Running`, the switch and issuer hosts on real sockets of 127.0.0.1 with a real client
as the acquirer.

A phone is a real HCE applet holding a token and a LUK from `LimitedUseKeys`; a tap is a
real `ContactlessKernel` dialogue with it, and its field 55 goes into the acquirer's 0100.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from milletpay.acquiring import (
    ContactlessKernel,
    NfcField,
    OutcomeKind,
    TerminalConfig,
    Transaction,
)
from milletpay.acquiring.kernel import AuthorizationData
from milletpay.banks import Bank, Banks, GeneratedBankKeys, IssuedCard
from milletpay.banks.host import issuer_handler
from milletpay.banks.keys import issuer_bins
from milletpay.cards import (
    Detokenizer,
    Expiry,
    PanVault,
    ProvisionOutcome,
    ProvisionRequest,
    Token,
    TokenDomain,
    TokenService,
    seal_card_for_tsp,
)
from milletpay.cards.luk import LimitedUseKeys, LukGrant
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.applet import HceCard, PaymentApplet
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity.otp import SimulatedSms
from milletpay.network.books import NetworkBooks
from milletpay.network.iso8583 import FieldValue, Message
from milletpay.network.link import Iso8583Client, Iso8583Server
from milletpay.network.storage import open_network_engine
from milletpay.network.switch import CardNetwork, IssuerDirectory, StandInLimits
from milletpay.sim.tap import hce_card
from milletpay.store import create_engine, upgrade

BANK_CODES = ("ICBC", "CCB")
WALLET_PHONE = "+8613800138000"
DEVICE = "phone-1"
CARD_PIN = "314159"
ACQUIRER = "12345678"
TERMINAL = "TERM 001"
TODAY = datetime.date(2026, 11, 26)
READER = TerminalConfig(contactless_limit_minor=500_000, cvm_limit_minor=100_000)
STAND_IN = StandInLimits(per_transaction_fen=5_000, per_card_daily_fen=8_000)
ISSUER_TIMEOUT_S = 1.0


def yuan(amount: int) -> int:
    return amount * 100


@dataclass
class Phone:
    token: Token
    grant: LukGrant
    applet: PaymentApplet
    held: HceCard
    clock: ManualClock

    def clone(self) -> Phone:
        """Another applet with the same token and LUK, its ATC from the start again."""
        return Phone(
            self.token, self.grant, PaymentApplet([self.held], self.clock), self.held, self.clock
        )


@dataclass
class NetworkWorld:
    engine: sa.Engine
    network_engine: sa.Engine
    clock: ManualClock
    keyring: KeyRing
    banks: Banks
    tsp: TokenService
    detokenizer: Detokenizer
    luks: LimitedUseKeys
    books: NetworkBooks
    people: int = 0

    def card(
        self, code: str = "ICBC", *, deposit_fen: int = yuan(1_000)
    ) -> tuple[Bank, IssuedCard, int]:
        """A new cardholder of bank `code`: (bank, card, account id)."""
        self.people += 1
        bank = self.banks.bank(code)
        customer = bank.open_customer(f"Holder {self.people}", phone=WALLET_PHONE)
        account = bank.open_account(customer, "debit")
        account_id = account.account.id
        if deposit_fen:
            assert bank.deposit(account_id, deposit_fen, f"opening-{self.people}")
        return bank, bank.issue_card(account_id, pin=CARD_PIN), account_id

    def token(self, card: IssuedCard, domain: TokenDomain = TokenDomain.CONTACTLESS) -> Token:
        expiry = Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))
        envelope = seal_card_for_tsp(self.tsp.public_key(), card.pan, expiry, card.cvn2)
        answer = self.tsp.provision(
            ProvisionRequest(0x1234, f"{DEVICE}-{domain}", domain, WALLET_PHONE, envelope)
        )
        assert answer.outcome is ProvisionOutcome.APPROVED and answer.token is not None
        return answer.token

    def phone(self, card: IssuedCard) -> Phone:
        """A phone holding a contactless token of `card` and its first LUK."""
        token = self.token(card)
        grant = self.luks.issue(token)
        held = hce_card(token, grant, "Debit")
        return Phone(token, grant, PaymentApplet([held], self.clock), held, self.clock)

    def verify_books(self) -> None:
        for code in BANK_CODES:
            assert self.banks.bank(code).verify().ok, code


def tap(phone: Phone, amount_fen: int) -> AuthorizationData:
    kernel = ContactlessKernel(READER, random.Random(amount_fen))
    with NfcField(phone.applet) as nfc:
        outcome = kernel.tap(nfc, Transaction(amount_fen, TODAY))
    assert outcome.kind is OutcomeKind.ONLINE_REQUEST, outcome.reason
    assert outcome.authorization is not None
    return outcome.authorization


class Acquirer:
    """Builds the acquirer's messages: its own STANs, one terminal."""

    def __init__(self) -> None:
        self._stan = 0

    def next_stan(self) -> str:
        self._stan += 1
        return f"{self._stan:06d}"

    def request(
        self,
        pan: str,
        amount_fen: int,
        *,
        mti: str = "0100",
        stan: str | None = None,
        **changes: FieldValue,
    ) -> Message:
        stan = stan or self.next_stan()
        fields: dict[int, FieldValue] = {
            2: pan,
            3: "000000",
            4: f"{amount_fen:012d}",
            7: "1126040000",
            11: stan,
            12: "120000",
            13: "1126",
            18: "5411",
            22: "071",
            25: "00",
            32: ACQUIRER,
            37: "633104" + stan,
            41: TERMINAL,
            42: "MERCHANT0000001",
            49: "156",
        }
        fields |= {int(k[1:]): v for k, v in changes.items()}
        return Message(mti, fields)

    def tap_request(
        self, authorization: AuthorizationData, amount_fen: int, **changes: FieldValue
    ) -> Message:
        tapped: dict[str, FieldValue] = {
            "_14": authorization.expiry_yymmdd[:4],
            "_23": f"{authorization.psn or 0:03d}",
            "_55": authorization.icc_data,
        }
        return self.request(authorization.pan, amount_fen, **(tapped | changes))  # type: ignore[arg-type]


@dataclass
class Running:
    switch: CardNetwork
    directory: IssuerDirectory
    acquirer: Iso8583Client
    switch_port: int
    issuers: dict[str, Iso8583Server]
    seen: dict[str, list[Message]]  # what each issuer host was sent

    async def stop_issuer(self, code: str) -> int:
        server = self.issuers.pop(code)
        port = server.port
        await server.close()
        return port

    async def start_issuer(self, world: NetworkWorld, code: str, port: int = 0) -> None:
        server = Iso8583Server(self._recording(world.banks.bank(code)), port=port)
        await server.start()
        self.issuers[code] = server
        self.directory.set_address(code, "127.0.0.1", server.port)

    def _recording(self, bank: Bank) -> Callable[[Message], Awaitable[Message]]:
        handler = issuer_handler(bank)
        seen = self.seen.setdefault(bank.code, [])

        async def handle(message: Message) -> Message:
            seen.append(message)
            return await handler(message)

        return handle


@asynccontextmanager
async def running(
    world: NetworkWorld, *, stand_in: StandInLimits = STAND_IN
) -> AsyncIterator[Running]:
    directory = IssuerDirectory({}, timeout_s=ISSUER_TIMEOUT_S)
    switch = CardNetwork(
        world.books,
        directory,
        world.detokenizer,
        world.luks,
        world.tsp,
        world.clock,
        stand_in=stand_in,
    )
    server = Iso8583Server(switch.handle)
    await server.start()
    acquirer = await Iso8583Client.connect("127.0.0.1", server.port)
    state = Running(switch, directory, acquirer, server.port, {}, {})
    try:
        for code in BANK_CODES:
            await state.start_issuer(world, code)
        yield state
    finally:
        await acquirer.close()
        await server.close()
        await switch.close()
        for issuer in state.issuers.values():
            await issuer.close()


@pytest.fixture
def world(database_url: str) -> Iterator[NetworkWorld]:
    clock = ManualClock()
    keyring = KeyRing.generate()
    engine = create_engine(database_url)
    upgrade(engine)
    banks = Banks(database_url, keyring, GeneratedBankKeys(), clock)
    vault = PanVault(engine, keyring, clock)
    tsp = TokenService(engine, vault, keyring, banks, SimulatedSms(), clock)
    luks = LimitedUseKeys(engine, IssuerKeyStore.generate(issuer_bins()), clock)
    network_engine = open_network_engine(database_url)
    books = NetworkBooks(network_engine, keyring, clock)
    yield NetworkWorld(
        engine,
        network_engine,
        clock,
        keyring,
        banks,
        tsp,
        Detokenizer(engine, vault, clock),
        luks,
        books,
    )
    banks.close()
    network_engine.dispose()
    engine.dispose()
