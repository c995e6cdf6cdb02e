"""The API application: `create_app(database_url)` gives the FastAPI app, /v1 paths.

The app is stateless apart from its database: several servers behind a load balancer
share one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from milletpay import __version__
from milletpay.api import (
    card_payments,
    cards,
    coins,
    merchants,
    partners,
    payments,
    users,
    wallet,
)
from milletpay.api.errors import ERROR_RESPONSES, error_response, install_error_handlers
from milletpay.api.idempotency import IdempotencyStore
from milletpay.api.lean import LeanPaths
from milletpay.api.sessions import SessionTokens
from milletpay.banks import BankKeys, Banks
from milletpay.banks.keys import IssuerKeyStoreKeys, issuer_bins
from milletpay.banks.model import CST
from milletpay.cards import PanVault, TokenService
from milletpay.cards.luk import LimitedUseKeys
from milletpay.checkout.card_funding import CardFunding
from milletpay.checkout.card_link import CardNetworkLink, SwitchLink
from milletpay.checkout.codes import PaymentCodes
from milletpay.checkout.intents import PaymentIntents
from milletpay.checkout.merchants import MerchantService
from milletpay.checkout.payouts import Payouts
from milletpay.checkout.webhooks import Webhooks, WebhookWorker
from milletpay.core.clock import NS_PER_S, Clock, SystemClock
from milletpay.core.collector import settle_collector
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import ImkSource, IssuerKeyStore, VersionedKey
from milletpay.identity import IdentityService, PinHashing, SimulatedSms, SmsChannel
from milletpay.identity.devices import DeviceRegistry
from milletpay.identity.quickpay import QuickPay
from milletpay.ledger import Ledger
from milletpay.ledger.committer import GroupCommitter
from milletpay.store import create_engine, resolve_database_url, upgrade
from milletpay.store.engine import write_gate_contended
from milletpay.wallet import BankGateway, CoinService, SimulatedBankGateway, WalletService

log = logging.getLogger(__name__)

#: How often the server finishes stuck wallet operations and removes lapsed step-ups.
MAINTENANCE_EVERY_S = 30.0
#: Threads for the blocking work of the lean routes (`api/lean.py`): a PIN's hash, a
#: read before the committer's unit. As many as Starlette's pool for plain `def` routes.
BLOCKING_THREADS_MAX = 40
#: The largest request body the API reads, in bytes.
REQUEST_BODY_MAX_BYTES = 64 * 1024
#: Allocations (less frees) between the garbage collector's young passes while serving.


async def _maintain(
    wallet: WalletService,
    tsp: TokenService,
    intents: PaymentIntents,
    payouts: Payouts,
    clock: Clock,
    card_funding: CardFunding | None = None,
) -> None:
    """Every `MAINTENANCE_EVERY_S`: finish the wallet operations a crash or a silent bank
    left pending (`WalletService.resume_pending`), delete the tokens whose step-up code
    lapsed unanswered (`TokenService.sweep_step_ups`), end the payment intents that
    expired or whose capture window lapsed (`PaymentIntents.sweep`), reverse the card
    payments a dead server left in flight (`CardFunding.resume_stuck`), and pay the merchants
    out for the China-time day before today (`Payouts.run_day`, once per day: a day the
    server was down for is paid when it starts again)."""
    paid_day: datetime.date | None = None
    while True:
        await asyncio.sleep(MAINTENANCE_EVERY_S)
        try:
            resumed = await run_in_threadpool(wallet.resume_pending)
            await run_in_threadpool(tsp.sweep_step_ups)
            await run_in_threadpool(intents.sweep)
            if card_funding is not None:
                await run_in_threadpool(card_funding.resume_stuck)
            yesterday = cst_date(clock.now_ns()) - datetime.timedelta(days=1)
            if yesterday != paid_day:
                await run_in_threadpool(payouts.run_day, yesterday)
                paid_day = yesterday
        except Exception:  # the database is away: the next pass tries again
            log.exception("server maintenance failed")
            continue
        if resumed.finished or resumed.failed:
            log.info(
                "pending wallet operations: %d finished, %d still stuck",
                resumed.finished,
                resumed.failed,
            )


class IssuerKeysOnFirstUse:
    """The issuer key store from the environment (`IssuerKeyStore.from_environment`),
    read when a bank or the token service first needs a key: a server that never opens
    a bank nor grants a limited-use key never reads (nor, in a new sandbox, creates)
    the issuer key file. Both the banks' keys (`BankKeys`) and IMK-ACs (`ImkSource`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: IssuerKeyStore | None = None

    def __repr__(self) -> str:
        return "IssuerKeysOnFirstUse()"

    def _loaded(self) -> IssuerKeyStore:
        with self._lock:  # one reader creates a new sandbox's key file, not two
            if self._store is None:
                self._store = IssuerKeyStore.from_environment(issuer_bins())
            return self._store

    def cvk(self, bank_code: str) -> bytes:
        return IssuerKeyStoreKeys(self._loaded()).cvk(bank_code)

    def pvk(self, bank_code: str) -> bytes:
        return IssuerKeyStoreKeys(self._loaded()).pvk(bank_code)

    def imk_ac(self, bank: str, bin_: str, version: int | None = None) -> VersionedKey:
        return self._loaded().imk_ac(bank, bin_, version)


class BodyLimit:
    """413 for a request whose Content-Length says more than `REQUEST_BODY_MAX_BYTES`
    (plain ASGI: it costs nothing on the requests it lets through)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and not (
                    value.isdigit() and int(value) <= REQUEST_BODY_MAX_BYTES
                ):
                    response = error_response(
                        413,
                        "request_too_large",
                        f"a request body is at most {REQUEST_BODY_MAX_BYTES} bytes",
                    )
                    await response(scope, receive, send)
                    return
        await self._app(scope, receive, send)


def cst_date(instant_ns: int) -> datetime.date:
    """The China-time calendar day of `instant_ns`."""
    return datetime.datetime.fromtimestamp(instant_ns // NS_PER_S, CST).date()


#: `millet serve --workers`: the card network switch (host:port) each server process of
#: `app_from_environment` connects to for card-funded payment intents.
ENV_CARD_NETWORK = "MILLET_CARD_NETWORK"


def app_from_environment() -> FastAPI:
    """The app as each process of `millet serve --workers N` builds it for itself: the
    database of `MILLET_DATABASE_URL` (the default file without it), the card network
    switch of `MILLET_CARD_NETWORK` (host:port) if set, every other part from the
    environment as `create_app` takes it."""
    switch = os.environ.get(ENV_CARD_NETWORK)
    card_network = None
    if switch:
        host, _, port = switch.rpartition(":")
        card_network = (host, int(port))
    return create_app(resolve_database_url(None), card_network=card_network)


def create_app(
    database_url: str | None = None,
    *,
    clock: Clock | None = None,
    keyring: KeyRing | None = None,
    sms: SmsChannel | None = None,
    pin_hashing: PinHashing | None = None,
    bank_gateway: BankGateway | None = None,
    banks: Banks | None = None,
    issuer_keys: IssuerKeyStore | None = None,
    webhooks_allow_http: bool = False,
    webhook_transport: httpx.BaseTransport | None = None,
    card_network: SwitchLink | tuple[str, int] | None = None,
) -> FastAPI:
    """The API on the database at `database_url`; the keyword arguments replace the
    production parts (system clock, key ring from the environment, the SMS gateway, the
    bank gateway: a `SimulatedBankGateway` until the banks exist; the issuing banks the
    token service asks: on the same database, with the issuer keys from the environment;
    the issuer keys the token service derives limited-use keys from, and the default
    banks' keys: from the environment).
    The app closes the banks when it shuts down, given ones too. Webhook endpoints must be
    https on public hosts unless `webhooks_allow_http` (a sandbox); a thread delivers
    them while the server runs (through `webhook_transport`, httpx's by default).
    `card_network`: the card network switch's (host, port), or a link to it, for payment
    intents paid with a tokenized bank card; without it, card funding answers 409
    `card_funding_unavailable`. The app closes the link when it shuts down."""
    url = resolve_database_url(database_url)
    engine = create_engine(url)
    upgrade(engine)
    clock = clock or SystemClock()
    keyring = keyring or KeyRing.from_environment()
    ledger = Ledger(engine, clock)  # the same database as everything else
    # One writer thread commits the money-moving work of all requests, many per commit.
    committer = GroupCommitter(ledger)
    blocking = ThreadPoolExecutor(BLOCKING_THREADS_MAX, thread_name_prefix="millet-blocking")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settle_collector()
        # The writer runs each batch alone in the process while other processes write
        # to the database too: the write gate it holds is the one they all take.
        committer.hold_while_writing(
            asyncio.get_running_loop(), when=lambda: write_gate_contended(engine)
        )
        sweeper = asyncio.create_task(
            _maintain(
                app.state.wallet,
                app.state.tsp,
                app.state.intents,
                app.state.payouts,
                clock,
                app.state.card_funding,
            )
        )
        stop_webhooks = threading.Event()
        worker = WebhookWorker(engine, keyring, clock, transport=webhook_transport)
        sender = threading.Thread(
            target=worker.run_forever, args=(stop_webhooks,), name="webhooks", daemon=True
        )
        sender.start()
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        stop_webhooks.set()
        sender.join()
        worker.close()
        if app.state.card_funding is not None:
            app.state.card_funding.close()
        committer.hold_while_writing(None)
        committer.close()
        blocking.shutdown()
        app.state.banks.close()
        engine.dispose()  # the pool's connections go now, not when the process ends

    app = FastAPI(
        title="Millet Pay API",
        version=__version__,
        description='Wallet and payments API. Errors are {"error": {code, message, field}}.',
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.engine = engine
    app.state.keyring = keyring
    app.state.clock = clock
    app.state.idempotency = IdempotencyStore(engine, clock)
    app.state.sms = sms or SimulatedSms()
    app.state.identity = IdentityService(
        engine, keyring, clock, app.state.sms, pin_hashing=pin_hashing
    )
    app.state.devices = DeviceRegistry(engine, clock)
    app.state.sessions = SessionTokens(keyring, clock)
    app.state.quick_pay = QuickPay(engine, clock)
    app.state.ledger = ledger
    app.state.committer = committer
    app.state.blocking = blocking
    app.state.bank = bank_gateway or SimulatedBankGateway()
    app.state.wallet = WalletService(
        app.state.ledger,
        app.state.identity,
        engine,
        clock,
        app.state.bank,
        committer=app.state.committer,
    )
    app.state.coins = CoinService(
        app.state.ledger, app.state.wallet, app.state.identity, engine, clock, app.state.bank
    )
    bank_keys: BankKeys
    imks: ImkSource
    if issuer_keys is None:
        bank_keys = imks = IssuerKeysOnFirstUse()
    else:
        bank_keys, imks = IssuerKeyStoreKeys(issuer_keys), issuer_keys
    app.state.banks = banks or Banks(url, keyring, bank_keys, clock)
    app.state.vault = PanVault(engine, keyring, clock)
    app.state.tsp = TokenService(
        engine, app.state.vault, keyring, app.state.banks, app.state.sms, clock
    )
    app.state.luks = LimitedUseKeys(engine, imks, clock)
    app.state.merchants = MerchantService(ledger, keyring, clock, committer=committer)
    app.state.webhooks = Webhooks(engine, keyring, clock, allow_http=webhooks_allow_http)
    app.state.payment_codes = PaymentCodes(engine, keyring, clock)
    app.state.payouts = Payouts(
        ledger,
        app.state.merchants,
        app.state.bank,
        clock,
        committer=committer,
        events=app.state.webhooks,
    )
    app.state.intents = PaymentIntents(
        ledger,
        app.state.wallet,
        app.state.merchants,
        keyring,
        clock,
        committer=committer,
        events=app.state.webhooks,
        coins=app.state.coins,
    )
    app.state.card_funding = None
    if card_network is not None:
        link = CardNetworkLink(*card_network) if isinstance(card_network, tuple) else card_network
        app.state.card_funding = CardFunding(
            app.state.intents,
            app.state.identity,
            app.state.tsp,
            link,
            keyring,
            clock,
            committer=committer,
        )
    install_error_handlers(app)

    # Added first, so the body limit (added after it) wraps it.
    app.add_middleware(LeanPaths, routers=[payments.router, merchants.router])
    app.add_middleware(BodyLimit)

    v1 = APIRouter(prefix="/v1")

    @v1.get("/health", tags=["platform"])
    def health() -> dict[str, str]:
        """The server is up and its database answers."""
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok", "database": engine.dialect.name, "version": __version__}

    app.include_router(v1)
    # A request is matched against the routes in this order, one by one: the routers of
    # the payment paths (the payer's confirmation, P2P, the merchant's intents) first.
    # No path of one router matches a route of another, so the order changes no answer.
    app.include_router(payments.router)
    app.include_router(wallet.router)
    app.include_router(merchants.router)
    app.include_router(users.router)
    app.include_router(coins.router)
    app.include_router(partners.router)
    app.include_router(cards.router)
    app.include_router(card_payments.router)
    return app
