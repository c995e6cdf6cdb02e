"""Tap to pay end to end, every party on its real protocol, in one process.

`TapPlatform` is the platform's side on one database URL: the token service, the PAN
vault, limited-use keys, the issuing banks (each its own books) and the card network's
books. `TapNetwork` runs the network on 127.0.0.1: one issuer host per bank (ISO 8583
over TCP, `banks.host`), the switch (`network.switch`) and the acquirer host
(`acquiring.host`) connected to it. A `TapPhone` is a phone's HCE applet holding a
contactless token and its limited-use key; `TapNetwork.tap` holds it to a merchant's
reader (`acquiring.kernel` over an in-process NFC field) and sends the kernel's outcome
through the acquirer, the switch and the issuer.

Used by `millet pos tap`, the demo's shopping scene and the tap benchmark. Simulated
parties reach the platform only through its protocols: the phone through the card API's
services (provisioning, LUKs), the terminal through APDUs, the acquirer through ISO 8583.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from milletpay.acquiring import ContactlessKernel, NfcField, OutcomeKind, Transaction
from milletpay.acquiring.host import AcquirerHost, AcquirerResult
from milletpay.acquiring.kernel import KernelOutcome
from milletpay.acquiring.merchants import MerchantDirectory, merchants
from milletpay.banks import Banks
from milletpay.banks.host import issuer_handler
from milletpay.banks.keys import IssuerKeyStoreKeys, issuer_bins
from milletpay.banks.model import CST
from milletpay.cards import (
    Detokenizer,
    Expiry,
    PanVault,
    ProvisionOutcome,
    ProvisionRequest,
    Token,
    TokenDomain,
    TokenService,
    TokenState,
    seal_card_for_tsp,
)
from milletpay.cards.luk import DEFAULT_LUK_LIMITS, LimitedUseKeys, LukGrant, LukLimits
from milletpay.core.clock import NS_PER_S, Clock, SystemClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.applet import UNIONPAY_AIDS, HceCard, HceLuk, PaymentApplet
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity import IdentityService, SimulatedSms, User
from milletpay.ledger.committer import GroupCommitter
from milletpay.network.books import NetworkBooks
from milletpay.network.iso8583 import Message
from milletpay.network.link import Handler, Iso8583Server
from milletpay.network.storage import open_network_engine
from milletpay.network.switch import CardNetwork, IssuerDirectory
from milletpay.store import create_engine, upgrade
from milletpay.store.engine import ConnectionTransaction, EngineTransactions, sqlite_path

#: The card a phone gets when its user has none yet: a debit card of this bank, its
#: account funded with this much.
DEFAULT_BANK: Final = "ICBC"
OPENING_DEPOSIT_FEN: Final = 500_000
CARD_PIN: Final = "246810"
#: What the network keeps of the switch's exchanges with the issuers, for printing.
ISSUER_EXCHANGES_KEPT: Final = 16
#: How long the simulated acquirer waits for the switch's answer before it reverses.
ACQUIRER_TIMEOUT_S: Final = 2.0


class TapSetupError(Exception):
    """The tap cannot be set up: the message says what to do."""


@dataclass
class TapPlatform:
    engine: sa.Engine
    network_engine: sa.Engine
    clock: Clock
    keyring: KeyRing
    identity: IdentityService
    banks: Banks
    vault: PanVault
    tsp: TokenService
    luks: LimitedUseKeys
    detokenizer: Detokenizer
    books: NetworkBooks
    #: Where the simulated acquirer keeps its terminals' STANs between runs (a file of
    #: its own beside a SQLite database); None: kept only while it runs.
    acquirer_state: Path | None = None
    #: The group committers of the switch's writes, when it has them; closed by `close`.
    committers: tuple[GroupCommitter[ConnectionTransaction], ...] = ()

    @classmethod
    def open(
        cls,
        database_url: str,
        *,
        clock: Clock | None = None,
        keyring: KeyRing | None = None,
        issuer_keys: IssuerKeyStore | None = None,
        luk_limits: LukLimits = DEFAULT_LUK_LIMITS,
        group_commit: bool = False,
    ) -> TapPlatform:
        """The platform's services on `database_url` (migrated), with the key ring and the
        issuer keys of the environment unless given. With `group_commit`, the switch's
        writes (its duplicate claims and clearing records, the LUK uses it counts) are
        group-committed, as a switch under load runs."""
        clock = clock or SystemClock()
        keyring = keyring or KeyRing.from_environment()
        issuer_keys = issuer_keys or IssuerKeyStore.from_environment(issuer_bins())
        engine = create_engine(database_url)
        upgrade(engine)
        sms = SimulatedSms()
        banks = Banks(database_url, keyring, IssuerKeyStoreKeys(issuer_keys), clock)
        vault = PanVault(engine, keyring, clock)
        network_engine = open_network_engine(database_url)
        committers: tuple[GroupCommitter[ConnectionTransaction], ...] = ()
        if group_commit:
            committers = (
                GroupCommitter(EngineTransactions(network_engine), name="millet-network-books"),
                GroupCommitter(EngineTransactions(engine), name="millet-luk-uses"),
            )
        books_committer, luk_committer = committers or (None, None)
        return cls(
            engine=engine,
            network_engine=network_engine,
            clock=clock,
            keyring=keyring,
            identity=IdentityService(engine, keyring, clock, sms),
            banks=banks,
            vault=vault,
            tsp=TokenService(engine, vault, keyring, banks, sms, clock),
            luks=LimitedUseKeys(
                engine, issuer_keys, clock, limits=luk_limits, committer=luk_committer
            ),
            detokenizer=Detokenizer(engine, vault, clock),
            books=NetworkBooks(network_engine, keyring, clock, committer=books_committer),
            acquirer_state=_beside(database_url, "acquirer", ".json"),
            committers=committers,
        )

    def switch(self, directory: IssuerDirectory) -> CardNetwork:
        """The card network's switch on these books and services, its issuers in
        `directory`."""
        return CardNetwork(self.books, directory, self.detokenizer, self.luks, self.tsp, self.clock)

    def close(self) -> None:
        for committer in self.committers:
            committer.close()
        self.banks.close()
        self.network_engine.dispose()
        self.engine.dispose()

    def phone_of(
        self,
        phone_number: str,
        *,
        bank_code: str = DEFAULT_BANK,
        deposit_fen: int = OPENING_DEPOSIT_FEN,
    ) -> TapPhone:
        """The phone of the Millet Pay user with `phone_number`, holding a contactless
        token and a fresh limited-use key: the user's live contactless token on this
        phone, or a new debit card of `bank_code` (a bank account in the user's name,
        funded, with the user's phone on file) added as one."""
        user_id = self.identity.user_id_by_phone(phone_number)
        if user_id is None:
            raise TapSetupError(
                f"no Millet Pay user has the phone number {phone_number}: register one "
                "(POST /v1/users), or run `millet demo` and use a phone number it prints"
            )
        user = self.identity.get_user(user_id)
        device = f"pos-phone-{user_id:032x}"[:32]
        live = [
            t
            for t in self.tsp.tokens_of(user_id, device)
            if t.domain is TokenDomain.CONTACTLESS and t.state is TokenState.ACTIVE
        ]
        if not live:
            enrolled = self._enroll(user_id, user, device, bank_code, deposit_fen)
            return self.load_phone(enrolled)
        return self.load_phone(live[0])

    def load_phone(self, token: Token) -> TapPhone:
        """A phone applet holding `token` with a new limited-use key from the TSP."""
        grant = self.luks.issue(token)
        label = self.banks.bank(token.bank_code).spec.name[:16]
        return TapPhone(token, PaymentApplet([hce_card(token, grant, label)], self.clock))

    def _enroll(
        self, user_id: int, user: User, device: str, bank_code: str, deposit_fen: int
    ) -> Token:
        """A debit card of `bank_code` in the user's name (the user's phone on file, the
        account funded with `deposit_fen`) added to `device` as a contactless token."""
        name, phone = user.real_name, user.phone
        bank = self.banks.bank(bank_code)
        customer = bank.open_customer(name, phone=phone)
        account = bank.open_account(customer, "debit").account.id
        if deposit_fen:
            bank.deposit(account, deposit_fen, f"pos-opening-{account:032x}")
        card = bank.issue_card(account, pin=CARD_PIN)
        expiry = Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))
        envelope = seal_card_for_tsp(self.tsp.public_key(), card.pan, expiry, card.cvn2)
        request = ProvisionRequest(user_id, device, TokenDomain.CONTACTLESS, phone, envelope)
        answer = self.tsp.provision(request)
        if answer.outcome is not ProvisionOutcome.APPROVED or answer.token is None:
            raise TapSetupError(f"the card was not added: {answer.outcome} {answer.reason}")
        return answer.token


def hce_card(token: Token, grant: LukGrant, label: str) -> HceCard:
    """What the phone's applet holds of a contactless token and the LUK it was granted:
    the token as a debit card of the UnionPay AID."""
    luk = HceLuk(
        grant.key,
        grant.luk_index,
        grant.profile,
        grant.atc_first,
        grant.atc_last,
        grant.uses_max,
        grant.expires_at_ns,
    )
    return HceCard(
        token_pan=grant.token_number,
        expiry_yymm=f"{token.expiry.year % 100:02d}{token.expiry.month:02d}",
        psn=token.psn,
        aid=UNIONPAY_AIDS["debit"],
        label=label,
        priority=1,
        luk=luk,
    )


def _beside(database_url: str, role: str, suffix: str) -> Path | None:
    """`<stem>-<role><suffix>` beside a SQLite database file; None for a server."""
    path = sqlite_path(database_url)
    return None if path is None else path.with_name(f"{path.stem}-{role}{suffix}")


@dataclass
class TapPhone:
    token: Token
    applet: PaymentApplet

    def touch_fingerprint(self, now_ns: int) -> None:
        """The consumer device CVM: the applet may make one cryptogram above the
        reader's CVM limit within its window."""
        self.applet.confirm_cdcvm(now_ns)


@dataclass(frozen=True, slots=True)
class TapResult:
    outcome: KernelOutcome
    result: AcquirerResult | None  # None: the reader decided without going online

    @property
    def approved(self) -> bool:
        return self.result is not None and self.result.approved


class TapNetwork:
    """The issuer hosts, the switch and the acquirer on 127.0.0.1, while open."""

    def __init__(
        self,
        platform: TapPlatform,
        bank_codes: Iterable[str] | None = None,
        *,
        directory: MerchantDirectory | None = None,
        seed: int = 1,
        acquirer_timeout_s: float = ACQUIRER_TIMEOUT_S,
        issuer_ports: Mapping[str, int] | None = None,
        switch_port: int | None = None,
    ) -> None:
        """`issuer_ports`: the banks' issuer hosts already listen on 127.0.0.1 at these
        ports (in another process, `sim.parties`); None: they run in this one.
        `switch_port`: the switch already listens there (with its issuers): only the
        acquirer runs in this process."""
        self._platform = platform
        self._issuer_ports = dict(issuer_ports) if issuer_ports is not None else None
        self._switch_port = switch_port
        self._port_in_use: int | None = None  # the switch's, once open
        self._codes = tuple(bank_codes or platform.banks.codes)
        self.merchants = directory or merchants()
        self._random = random.Random(seed)
        self._servers: list[Iso8583Server] = []
        self.issuer_exchanges: list[tuple[Message, Message | None]] = []
        self._acquirer_timeout_s = acquirer_timeout_s
        #: Fault injection: seconds each bank's host waits before it answers.
        self.issuer_delay_s: dict[str, float] = {}
        self.switch: CardNetwork | None = None
        self.acquirer: AcquirerHost | None = None

    async def __aenter__(self) -> TapNetwork:
        platform = self._platform
        switch_port = self._switch_port
        if switch_port is None:
            switch_port = await self._start_switch()
        self._port_in_use = switch_port
        self.acquirer = AcquirerHost(
            "127.0.0.1",
            switch_port,
            platform.clock,
            self.merchants,
            last_stans=self._load_stans(),
            response_timeout_s=self._acquirer_timeout_s,
        )
        await self.acquirer.__aenter__()
        return self

    async def _start_switch(self) -> int:
        """The issuer hosts (unless elsewhere) and the switch; the switch's port."""
        platform = self._platform
        directory = IssuerDirectory({})
        for code in self._codes:
            if self._issuer_ports is not None:
                directory.set_address(code, "127.0.0.1", self._issuer_ports[code])
                continue
            bank = platform.banks.bank(code)
            server = Iso8583Server(self._recorded(code, issuer_handler(bank)))
            await server.start()
            self._servers.append(server)
            directory.set_address(code, "127.0.0.1", server.port)
        self.switch = platform.switch(directory)
        switch_server = Iso8583Server(self.switch.handle)
        await switch_server.start()
        self._servers.append(switch_server)
        return switch_server.port

    async def __aexit__(self, *_exc: object) -> None:
        if self.acquirer is not None:
            self._save_stans(self.acquirer.last_stans())
            await self.acquirer.close()
        if self.switch is not None:
            await self.switch.close()
        for server in reversed(self._servers):
            await server.close()

    @property
    def switch_port(self) -> int:
        """The port of the switch on 127.0.0.1 that other acquirers connect to: the one
        this network started, or the `switch_port` it was given."""
        assert self._port_in_use is not None, "open the network first (async with)"
        return self._port_in_use

    async def restart_switch(self) -> None:
        """Fault injection: the switch's server stops (its connections dropped, answers
        in flight lost) and starts again on the same port, its books as they were."""
        assert self.switch is not None
        server = self._servers.pop()
        port = server.port
        await server.close()
        restarted = Iso8583Server(self.switch.handle, port=port)
        await restarted.start()
        self._servers.append(restarted)

    def _load_stans(self) -> dict[str, int]:
        path = self._platform.acquirer_state
        if path is None or not path.exists():
            return {}
        kept = json.loads(path.read_text())
        return {str(tid): int(last) for tid, last in kept.get("last_stans", {}).items()}

    def _save_stans(self, last_stans: Mapping[str, int]) -> None:
        path = self._platform.acquirer_state
        if path is not None:
            path.write_text(json.dumps({"last_stans": dict(last_stans)}, sort_keys=True))

    def _recorded(self, code: str, handler: Handler) -> Handler:
        """`handler`, the switch's requests to the issuer and its answers kept (the last
        `ISSUER_EXCHANGES_KEPT`) for printing each hop; slowed by `issuer_delay_s`."""

        async def handle(message: Message) -> Message | None:
            delay_s = self.issuer_delay_s.get(code, 0.0)
            if delay_s:
                await asyncio.sleep(delay_s)
            answer = await handler(message)
            self.issuer_exchanges.append((message, answer))
            del self.issuer_exchanges[:-ISSUER_EXCHANGES_KEPT]
            return answer

        return handle

    def read(self, phone: TapPhone, terminal_id: str, amount_fen: int) -> KernelOutcome:
        """The reader's side of a tap: the kernel's dialogue with the phone's applet."""
        _, terminal = self.merchants.terminal(terminal_id)
        kernel = ContactlessKernel(terminal.config, self._random)
        today = datetime.datetime.fromtimestamp(
            self._platform.clock.now_ns() // NS_PER_S, CST
        ).date()
        with NfcField(phone.applet) as nfc:
            return kernel.tap(nfc, Transaction(amount_fen, today))

    async def tap(self, phone: TapPhone, terminal_id: str, amount_fen: int) -> TapResult:
        """One tap at `terminal_id`: the reader's dialogue with the phone, then, if the
        reader goes online, the authorization through the acquirer, the switch and the
        user's bank."""
        assert self.acquirer is not None, "open the network first (async with)"
        outcome = self.read(phone, terminal_id, amount_fen)
        if outcome.kind is not OutcomeKind.ONLINE_REQUEST:
            return TapResult(outcome, None)
        result = await self.acquirer.authorize(terminal_id, outcome, amount_fen)
        return TapResult(outcome, result)


__all__ = [
    "TapNetwork",
    "TapPhone",
    "TapPlatform",
    "TapResult",
    "TapSetupError",
]
