"""The mall scene of `millet demo`: the platform's own shop and third-party merchants sell
through Millet Pay's HTTP API.

It serves the API (`create_app`, the sandbox's http webhooks) with uvicorn on 127.0.0.1,
in a thread of this process, on the demo's database, key ring and clock, and drives it
only the way merchants' servers and shoppers' wallet apps do: over HTTP. Merchants sign
up and register a webhook endpoint at a receiver of their own on 127.0.0.1
(`WebhookReceiver`), which checks every delivery's signature and drops repeats. Shoppers
sign up through the app and pay in-app (with the fingerprint or the PIN, one payment held
and captured in part), by a merchant's static and dynamic QR codes and by showing a
one-time payment code; a bookshop refunds in part; coins are bought, and spent at the game
studio once the API takes coins as an intent's funding. Once the clock is past midnight
the server's end-of-day job pays each merchant out, and every merchant is told by a signed
`payout.paid`: that job is the one call the scene makes to the app itself
(`Payouts.run_day` for the day before, as the server's maintenance would on its next
pass, which comes only `MAINTENANCE_EVERY_S` after start).

The parties outside the platform are simulated and handed to `create_app` as its
replacements: the banks behind the wallets and the merchants' settlement accounts
(`SimulatedBankGateway`), the phones' SMS inbox, and one phone's fingerprint reader
(`SimulatedPhone`). The scene never reads or writes the platform's tables.
"""

from __future__ import annotations

import datetime
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import uvicorn
from fastapi import FastAPI
from rich import box
from rich.console import Console
from rich.table import Table

from milletpay.api import create_app
from milletpay.api.app import cst_date
from milletpay.banks.model import CST
from milletpay.checkout.payouts import Payouts
from milletpay.checkout.webhooks import SignatureInvalid, signature_header
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.core.money import Money
from milletpay.identity import SimulatedSms
from milletpay.identity.devices import MILLET_RP
from milletpay.sim.phone import SimulatedPhone
from milletpay.sim.scene import CASTS_MAX, Outcome, cast_phone, national_id, scene_line
from milletpay.sim.webhook_receiver import WebhookReceiver
from milletpay.wallet import FEN_PER_COIN, SimulatedBankGateway

# -- the cast -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """A merchant: its application, and its endpoint's path at the receiver. Display
    names are printable ASCII: they are the QR code's merchant name (EMV tag 59)."""

    slug: str
    what: str
    legal_name: str
    display_name: str
    city: str
    mcc: str
    bank_code: str


@dataclass(frozen=True)
class Shopper:
    name: str
    born: str  # YYYYMMDD
    bank_code: str
    top_up_fen: int


# fmt: off
MILLET_STORE = Shop("millet-store", "the platform's own shop", "Millet Technology Co., Ltd.",
                    "Millet Store", "Beijing", "5732", "ICBC")
CAFE         = Shop("lantern-cafe", "a cafe", "Lantern Cafe (Shanghai) Co., Ltd.",
                    "Lantern Cafe", "Shanghai", "5814", "CCB")
GAME_STUDIO  = Shop("cloud-crane", "a game studio", "Cloud Crane Games (Chengdu) Co., Ltd.",
                    "Cloud Crane Games", "Chengdu", "5816", "CMB")
BOOKSHOP     = Shop("inkstone", "a bookshop", "Inkstone Books (Hangzhou) Co., Ltd.",
                    "Inkstone Books", "Hangzhou", "5942", "BOC")
LIN_XIAO = Shopper("Lin Xiao", "19940612", "ICBC", 6_000_00)
HE_JUN   = Shopper("He Jun",   "19890203", "CCB",    500_00)
# fmt: on
SHOPS: Final = (MILLET_STORE, CAFE, GAME_STUDIO, BOOKSHOP)
SHOPPERS: Final = (LIN_XIAO, HE_JUN)

#: A cast's phone numbers are 1393 + cast number (4 digits) + place (3 digits).
PHONE_PREFIX: Final = "1393"
PIN: Final = "246810"
#: The KYC channels each shopper verifies in the app: three make Class II.
CHANNELS: Final = ("bank_card", "public_security_id", "telecom")
FINGER: Final = "right thumb"
#: Each shopper's bank account holds this many top-ups when the scene opens it.
BANK_OPENING_TOP_UPS: Final = 5

# What is bought, in fen (coins for coins): the scene's own arithmetic checks the payouts.
BAND_FEN: Final = 249_00  # in-app at the Millet Store, approved with the fingerprint
PRE_ORDER_FEN: Final = 3_999_00  # held at the Millet Store (manual capture)
PRE_ORDER_CAPTURED_FEN: Final = 3_699_00  # the launch price: the rest is released
SEASON_PASS_FEN: Final = 18_00  # in-app at the game studio, approved with the PIN
LATTE_FEN: Final = 32_00  # typed at the café's static QR code
BOOKS_FEN: Final = 128_00  # the bookshop's dynamic QR code
BOOK_REFUND_FEN: Final = 48_00  # one of the books goes back
BREAKFAST_FEN: Final = 26_00  # collected by the café from a payment code
COINS_BOUGHT: Final = 60
EXPANSION_COINS: Final = 30  # paid to the game studio in coins

#: How long the scene waits for the server's webhook worker (which looks every second).
DELIVERY_WAIT_S: Final = 30.0
#: How long the API server may take to start.
SERVER_START_S: Final = 60.0
#: The end-of-day job runs this long after midnight, China time.
PAST_MIDNIGHT_S: Final = 60
#: The confirm path and the field the coin funding line needs from the API.
CONFIRM_PATH: Final = "/v1/me/payment-intents/{intent_id}/confirm"
FUNDING_FIELD: Final = "funding"
#: The event the bookshop replays.
REFUNDED: Final = "refund.succeeded"
#: A signing secret no endpoint has: the forged delivery's.
FORGER_SECRET: Final = "whsec_" + "f" * 43


def cny(amount_fen: int) -> str:
    return str(Money(amount_fen, "CNY"))


# -- the day's state ------------------------------------------------------------------


@dataclass(frozen=True)
class Onboarded:
    """A merchant as its server knows itself: its id, secret key and bank account."""

    id: str
    headers: dict[str, str]  # Authorization with the secret key
    account_number: str
    endpoint_id: str


@dataclass(frozen=True)
class Wallet:
    """A shopper's wallet app: signed in."""

    phone: str
    headers: dict[str, str]


@dataclass
class Mall:
    """What the steps share: the API client, the simulated outside parties, the cast,
    and the (merchant, event type, object id) the receiver should get."""

    http: httpx.Client
    clock: ManualClock
    sms: SimulatedSms
    bank: SimulatedBankGateway
    receiver: WebhookReceiver
    payouts: Payouts
    cast_number: int = 0
    merchants: dict[Shop, Onboarded] = field(default_factory=dict)
    wallets: dict[Shopper, Wallet] = field(default_factory=dict)
    phone: SimulatedPhone | None = None
    expected: set[tuple[str, str, str]] = field(default_factory=set)
    paid_out: dict[Shop, tuple[int, int]] = field(default_factory=dict)  # (owed, payout)
    orders: dict[str, Any] = field(default_factory=dict)  # the intents, by order id

    def post(
        self, path: str, headers: dict[str, str], body: Any = None, key: str | None = None
    ) -> httpx.Response:
        sent = dict(headers) if key is None else {**headers, "Idempotency-Key": key}
        return self.http.post(path, json=body, headers=sent)

    def expect(self, shop: Shop, *events: tuple[str, str]) -> None:
        """The (type, object id) events `shop`'s endpoint should receive."""
        self.expected |= {(shop.slug, kind, object_id) for kind, object_id in events}


@dataclass(frozen=True)
class MallScene:
    """What the scene leaves: its lines, the receiver, and each merchant's payout as
    (what it was owed before the payout, what was paid)."""

    lines: tuple[Outcome, ...]
    receiver: WebhookReceiver
    paid_out: dict[Shop, tuple[int, int]]
    cast_number: int


# -- serving --------------------------------------------------------------------------


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1 in a thread of this process
    while the block runs (its base URL); its lifespan (the webhook worker) included."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mall-api")
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def play_mall_scene(
    database_url: str, clock: ManualClock, console: Console, keyring: KeyRing
) -> MallScene:
    """Play the mall on `database_url` with the demo's clock and the platform key ring."""
    sms, bank, receiver = SimulatedSms(), SimulatedBankGateway(), WebhookReceiver(clock)
    app = create_app(
        database_url,
        clock=clock,
        keyring=keyring,
        sms=sms,
        bank_gateway=bank,
        webhooks_allow_http=True,  # the receiver is on 127.0.0.1, over http: a sandbox
    )
    with (
        receiver.serving(),
        served(app) as base_url,
        httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as http,
    ):
        mall = Mall(http, clock, sms, bank, receiver, app.state.payouts)
        lines = _play(mall, console)
    return MallScene(tuple(lines), receiver, dict(mall.paid_out), mall.cast_number)


def _play(mall: Mall, console: Console) -> list[Outcome]:
    registered = _register_cast(mall)
    console.print(
        f"[bold]Mall[/bold]: {len(SHOPS)} merchants sell to {len(SHOPPERS)} shoppers through "
        f"the HTTP API (cast {mall.cast_number})\n"
    )
    if not registered:
        line = Outcome(f"no free cast of shoppers in {CASTS_MAX - 1}", ("none",), False)
        console.print(scene_line("shopper", line))
        return [line]
    lines: list[Outcome] = []
    for step in STEPS:
        for line in step.play(mall):
            lines.append(line)
            console.print(scene_line(step.label, line))
    console.print()
    console.print(merchants_table(mall))
    console.print()
    return lines


# -- merchants and shoppers -----------------------------------------------------------


def onboard_merchants(mall: Mall) -> list[Outcome]:
    lines = []
    for place, shop in enumerate(SHOPS):
        account_number = f"6217{mall.cast_number:04d}{place + 1:08d}"
        mall.bank.open_account(shop.bank_code, account_number, shop.legal_name)
        application = {
            "legal_name": shop.legal_name,
            "display_name": shop.display_name,
            "city": shop.city,
            "mcc": shop.mcc,
            "settlement_bank_code": shop.bank_code,
            "settlement_account_number": account_number,
        }
        signed_up = mall.post("/v1/merchants", {}, application)
        if signed_up.status_code != 201:
            lines.append(_refused(f"{shop.display_name} applies", signed_up))
            continue
        body = signed_up.json()
        headers = {"Authorization": f"Bearer {body['secret_key']}"}
        url = mall.receiver.url(shop.slug)
        made = mall.post("/v1/merchant/webhook-endpoints", headers, {"url": url})
        if made.status_code != 201:
            lines.append(_refused(f"{shop.display_name}'s webhook endpoint", made))
            continue
        mall.receiver.set_secret(shop.slug, made.json()["secret"])
        merchant = body["merchant"]
        mall.merchants[shop] = Onboarded(merchant["id"], headers, account_number, made.json()["id"])
        digital = ", digital goods" if merchant["digital_goods"] else ""
        kind = f"MDR {merchant['mdr_bps']} bp{digital}"
        text = (
            f"{shop.display_name}, {shop.what} ({shop.mcc}, {kind}), signs up: secret key, "
            f"webhooks to {url.removeprefix('http://')}"
        )
        codes = (merchant["status"], made.json()["status"])
        lines.append(Outcome(text, codes, codes == ("active", "enabled")))
    return lines


def open_wallets(mall: Mall) -> list[Outcome]:
    """Each shopper of the cast signs in, verifies, sets the PIN, links a bank, tops up."""
    return [_open_wallet(mall, shopper, place) for place, shopper in enumerate(SHOPPERS)]


def _register_cast(mall: Mall) -> bool:
    """Register the shoppers through the app under the first cast number whose phone
    numbers are all free on this database; False if there is none."""
    for cast_number in range(1, CASTS_MAX):
        for place, shopper in enumerate(SHOPPERS):
            person = {
                "phone": cast_phone(PHONE_PREFIX, cast_number, place),
                "real_name": shopper.name,
                "national_id": national_id(shopper.born, cast_number),
            }
            if mall.post("/v1/users", {}, person).status_code != 201:
                break  # an earlier run's cast
        else:
            mall.cast_number = cast_number
            return True
    return False


def _open_wallet(mall: Mall, shopper: Shopper, place: int) -> Outcome:
    phone = cast_phone(PHONE_PREFIX, mall.cast_number, place)
    mall.post("/v1/sessions/codes", {}, {"phone": phone})
    texted = mall.sms.messages_to("+86" + phone)[-1].text
    code = texted.split("code is ")[1][:6]
    session = mall.post("/v1/sessions", {}, {"phone": phone, "code": code})
    headers = {"Authorization": f"Bearer {session.json()['token']}"}
    for channel in CHANNELS:
        verified = mall.post("/v1/me/kyc/channels", headers, {"channel": channel})
    tier = verified.json()["kyc_tier"]
    mall.http.put("/v1/me/pin", json={"pin": PIN}, headers=headers)
    mall.post("/v1/me/wallet", headers)
    account_number = f"6222{mall.cast_number:04d}{place + 1:08d}"
    opening_fen = BANK_OPENING_TOP_UPS * shopper.top_up_fen
    mall.bank.open_account(shopper.bank_code, account_number, shopper.name, opening_fen)
    link = {"bank_code": shopper.bank_code, "account_number": account_number}
    linked = mall.post("/v1/me/bank-accounts", headers, link).json()
    top_up = {"bank_account_id": linked["id"], "amount_fen": shopper.top_up_fen, "pin": PIN}
    topped = mall.post("/v1/me/top-ups", headers, top_up, "mall-top-up")
    mall.wallets[shopper] = Wallet(phone, headers)
    status = topped.json().get("status", _error_code(topped))
    text = (
        f"{shopper.name} signs up in the app ({tier}), links {shopper.bank_code} "
        f"{linked['account_masked']}, tops up {cny(shopper.top_up_fen)}"
    )
    return Outcome(text, (tier, status), (tier, status) == ("Class II", "completed"))


# -- paying ---------------------------------------------------------------------------


def new_intent(mall: Mall, shop: Shop, amount_fen: int, order: str, **extra: Any) -> Any:
    """The merchant's server creates an intent for its order; the intent's JSON."""
    body = {"amount_fen": amount_fen, "merchant_order_id": order, **extra}
    made = mall.post("/v1/payment-intents", mall.merchants[shop].headers, body)
    assert made.status_code == 201, made.text
    intent = made.json()
    mall.orders[order] = intent
    mall.expect(shop, ("payment_intent.created", intent["id"]))
    return intent


def confirm(mall: Mall, shopper: Shopper, intent: Any, key: str, **approval: Any) -> httpx.Response:
    """The wallet pays the intent: the PIN unless another approval is given."""
    body = {"client_secret": intent["client_secret"], **(approval or {"pin": PIN})}
    path = CONFIRM_PATH.format(intent_id=intent["id"])
    return mall.post(path, mall.wallets[shopper].headers, body, key)


def quick_pay_approval(mall: Mall, shopper: Shopper, key: str, intent: Any) -> Any:
    """The phone's fingerprint approval of paying `intent` with the idempotency `key`."""
    phone = mall.phone
    assert phone is not None
    challenge = {
        "device_id": phone.device_id,
        "idempotency_key": key,
        "kind": "payment_intent",
        "amount_fen": intent["amount_fen"],
        "payment_intent_id": intent["id"],
    }
    options = mall.post("/v1/me/quick-pay/challenges", mall.wallets[shopper].headers, challenge)
    assert options.status_code == 201, options.text
    phone.touch(FINGER)
    assertion = phone.get_assertion(json.dumps(options.json()), MILLET_RP.origins[0])
    assert assertion is not None
    return json.loads(assertion)


def bind_phone(mall: Mall, shopper: Shopper) -> SimulatedPhone:
    phone = SimulatedPhone(f"mall-{mall.cast_number}", "Millet 15", mall.clock)
    phone.enroll_fingerprint(FINGER)
    headers = mall.wallets[shopper].headers
    binding = {"device_id": phone.device_id, "model": phone.model}
    options = mall.post("/v1/me/devices/bindings", headers, binding)
    assert options.status_code == 201, options.text
    phone.touch(FINGER)
    credential = phone.create_credential(json.dumps(options.json()), MILLET_RP.origins[0])
    assert credential is not None
    bound = mall.post("/v1/me/devices", headers, {"credential": json.loads(credential)})
    assert bound.status_code == 201, bound.text
    return phone


def in_app_with_fingerprint(mall: Mall) -> list[Outcome]:
    mall.phone = bind_phone(mall, LIN_XIAO)
    intent = new_intent(mall, MILLET_STORE, BAND_FEN, "band-9", description="Millet Band 9")
    key = "band-9"
    approval = quick_pay_approval(mall, LIN_XIAO, key, intent)
    paid = confirm(mall, LIN_XIAO, intent, key, quick_pay_assertion=approval)
    text = (
        f"{LIN_XIAO.name} buys a Millet Band 9 in the {MILLET_STORE.display_name} app for "
        f"{cny(BAND_FEN)}, approved with her fingerprint"
    )
    return [_paid(mall, MILLET_STORE, intent, paid, text)]


def held_and_captured_in_part(mall: Mall) -> list[Outcome]:
    shop, headers = MILLET_STORE, mall.merchants[MILLET_STORE].headers
    intent = new_intent(mall, shop, PRE_ORDER_FEN, "pre-order-15", capture_method="manual")
    held = confirm(mall, LIN_XIAO, intent, "pre-order-15")
    mall.expect(shop, ("payment_intent.requires_capture", intent["id"]))
    path = f"/v1/payment-intents/{intent['id']}/capture"
    captured = mall.post(path, headers, {"amount_fen": PRE_ORDER_CAPTURED_FEN})
    mall.expect(shop, ("payment_intent.succeeded", intent["id"]))
    codes = (_status(held), _status(captured))
    received = captured.json().get("amount_received_fen")
    text = (
        f"a Millet 15 pre-order holds {cny(PRE_ORDER_FEN)}; shipped at the launch price, "
        f"{cny(PRE_ORDER_CAPTURED_FEN)} captured, "
        f"{cny(PRE_ORDER_FEN - PRE_ORDER_CAPTURED_FEN)} released"
    )
    as_expected = codes == ("requires_capture", "succeeded") and received == PRE_ORDER_CAPTURED_FEN
    return [Outcome(text, codes, as_expected)]


def in_app_with_pin(mall: Mall) -> list[Outcome]:
    intent = new_intent(mall, GAME_STUDIO, SEASON_PASS_FEN, "season-pass")
    paid = confirm(mall, HE_JUN, intent, "season-pass")
    text = (
        f"{HE_JUN.name} buys a season pass in {GAME_STUDIO.display_name} for "
        f"{cny(SEASON_PASS_FEN)} with the PIN"
    )
    return [_paid(mall, GAME_STUDIO, intent, paid, text)]


def static_qr(mall: Mall) -> list[Outcome]:
    till = mall.http.get("/v1/merchant/qr", headers=mall.merchants[CAFE].headers)
    payload = till.json()["payload"]
    wallet = mall.wallets[HE_JUN]
    scanned = mall.post("/v1/me/qr/scans", wallet.headers, {"payload": payload})
    typed = {"payload": payload, "amount_fen": LATTE_FEN, "pin": PIN}
    paid = mall.post("/v1/me/qr/payments", wallet.headers, typed, "latte")
    if paid.status_code == 200:
        for kind in ("payment_intent.created", "payment_intent.succeeded"):
            mall.expect(CAFE, (kind, paid.json()["id"]))
    codes = (scanned.json().get("kind", _error_code(scanned)), _status(paid))
    text = (
        f"{HE_JUN.name} scans {CAFE.display_name}'s till code and types {cny(LATTE_FEN)} "
        f"for a latte"
    )
    return [Outcome(text, codes, codes == ("merchant", "succeeded"))]


def dynamic_qr(mall: Mall) -> list[Outcome]:
    shop = BOOKSHOP
    intent = new_intent(mall, shop, BOOKS_FEN, "two-books")
    shown = mall.post(f"/v1/payment-intents/{intent['id']}/qr", mall.merchants[shop].headers)
    wallet = mall.wallets[LIN_XIAO]
    scanned = mall.post("/v1/me/qr/scans", wallet.headers, {"payload": shown.json()["payload"]})
    read = scanned.json()
    on_screen = read["payment_intent"]["amount_fen"] if scanned.status_code == 200 else 0
    paid = confirm(mall, LIN_XIAO, {**intent, "client_secret": read["client_secret"]}, "books")
    mall.expect(shop, ("payment_intent.succeeded", intent["id"]))
    codes = (read.get("kind", _error_code(scanned)), _status(paid))
    text = (
        f"{LIN_XIAO.name} scans {shop.display_name}' code for two books: "
        f"{cny(on_screen)} on her screen, paid with the PIN"
    )
    return [Outcome(text, codes, codes == ("payment_intent", "succeeded"))]


def payment_code(mall: Mall) -> list[Outcome]:
    shown = mall.post("/v1/me/payment-codes", mall.wallets[HE_JUN].headers)
    code = shown.json()["cpm"]
    headers = mall.merchants[CAFE].headers
    breakfast = new_intent(mall, CAFE, BREAKFAST_FEN, "breakfast")
    path = "/v1/payment-intents/{id}/collect"
    collected = mall.post(
        path.format(id=breakfast["id"]), headers, {"payment_code": code}, "breakfast"
    )
    mall.expect(CAFE, ("payment_intent.succeeded", breakfast["id"]))
    text = (
        f"{HE_JUN.name}'s wallet shows a one-time payment code; {CAFE.display_name} "
        f"scans it for breakfast, {cny(BREAKFAST_FEN)}"
    )
    lines = [Outcome(text, (_status(collected),), _status(collected) == "succeeded")]
    again = new_intent(mall, CAFE, BREAKFAST_FEN, "breakfast-again")
    refused = mall.post(
        path.format(id=again["id"]), headers, {"payment_code": code}, "breakfast-again"
    )
    canceled = mall.post(f"/v1/payment-intents/{again['id']}/cancel", headers)
    mall.expect(CAFE, ("payment_intent.canceled", again["id"]))
    codes = (_error_code(refused), _status(canceled))
    text = "the same code scanned again for another order: refused; the cafe cancels it"
    lines.append(Outcome(text, codes, codes == ("payment_code_used", "canceled")))
    return lines


def partial_refund(mall: Mall) -> list[Outcome]:
    shop = BOOKSHOP
    headers = mall.merchants[shop].headers
    intent = mall.orders["two-books"]
    body = {"amount_fen": BOOK_REFUND_FEN, "reason": "one book was a duplicate gift"}
    refund = mall.post(f"/v1/payment-intents/{intent['id']}/refunds", headers, body, "book-1")
    if refund.status_code == 201:
        mall.expect(shop, (REFUNDED, refund.json()["id"]))
    text = (
        f"{shop.display_name} refunds one of the two books: {cny(BOOK_REFUND_FEN)} of "
        f"{cny(intent['amount_fen'])} back to {LIN_XIAO.name}'s wallet"
    )
    return [Outcome(text, (_status(refund),), _status(refund) == "succeeded")]


def buy_coins(mall: Mall) -> list[Outcome]:
    """Coins bought from the wallet balance (`POST /v1/me/coins/purchases`)."""
    headers = mall.wallets[LIN_XIAO].headers
    body = {"coins": COINS_BOUGHT, "source": "balance", "pin": PIN}
    bought = mall.post("/v1/me/coins/purchases", headers, body, "coins")
    held = mall.http.get("/v1/me/coins", headers=headers).json()["coins"]
    text = (
        f"{LIN_XIAO.name} buys {Money(COINS_BOUGHT, 'XCN')} from her balance for "
        f"{cny(COINS_BOUGHT * FEN_PER_COIN)}; her purse holds {Money(held, 'XCN')}"
    )
    status = _status(bought)
    return [Outcome(text, (status,), status == "completed" and held == COINS_BOUGHT)]


def pay_in_coins(mall: Mall) -> list[Outcome]:
    """The game studio paid in coins: an intent confirmed with `{"funding": "coins"}`.

    Until the API's confirm body names a funding, the line says so and pays nothing: a
    server that does not know the field would take the wallet's money instead."""
    shopper, shop = LIN_XIAO, GAME_STUDIO
    amount_fen = EXPANSION_COINS * FEN_PER_COIN
    text = (
        f"{shopper.name} pays {shop.display_name} {Money(EXPANSION_COINS, 'XCN')} "
        f"for an expansion, funded by coins"
    )
    if not confirm_takes_funding(mall.http):
        return [Outcome(f"{text}: not yet supported by the API", ("coins_unsupported",), True)]
    headers = mall.wallets[shopper].headers
    coins_before = mall.http.get("/v1/me/coins", headers=headers).json()["coins"]
    wallet_before = mall.http.get("/v1/me/wallet", headers=headers).json()["posted_fen"]
    intent = new_intent(mall, shop, amount_fen, "expansion")
    paid = confirm(mall, shopper, intent, "expansion", pin=PIN, **{FUNDING_FIELD: "coins"})
    if paid.status_code != 200:
        return [_coins_refused(mall, shop, intent, paid, text)]
    mall.expect(shop, ("payment_intent.succeeded", intent["id"]))
    coins_after = mall.http.get("/v1/me/coins", headers=headers).json()["coins"]
    wallet_after = mall.http.get("/v1/me/wallet", headers=headers).json()["posted_fen"]
    as_expected = (
        _status(paid) == "succeeded"
        and coins_before - coins_after == EXPANSION_COINS
        and wallet_after == wallet_before
    )
    return [Outcome(text, (_status(paid),), as_expected)]


def confirm_takes_funding(http: httpx.Client) -> bool:
    """Whether the API's published confirm body (`/openapi.json`) has `funding`."""
    spec = http.get("/openapi.json").json()
    operation = spec["paths"][CONFIRM_PATH]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return FUNDING_FIELD in spec["components"]["schemas"][name].get("properties", {})


def _coins_refused(mall: Mall, shop: Shop, intent: Any, paid: httpx.Response, text: str) -> Outcome:
    """A refusal naming the funding says "not supported" (and the order is canceled);
    any other refusal is wrong."""
    error = paid.json().get("error", {})
    mall.post(f"/v1/payment-intents/{intent['id']}/cancel", mall.merchants[shop].headers)
    mall.expect(shop, ("payment_intent.canceled", intent["id"]))
    if error.get("field") == FUNDING_FIELD:
        return Outcome(f"{text}: not yet supported by the API", ("coins_unsupported",), True)
    return Outcome(text, (str(error.get("code", paid.status_code)),), False)


# -- webhooks -------------------------------------------------------------------------


def deliveries(mall: Mall) -> list[Outcome]:
    arrived = mall.receiver.wait_for(mall.expected, DELIVERY_WAIT_S)
    events = mall.receiver.events
    kinds = sorted({e.type for e in events})
    text = f"{len(events)} events reach the merchants' servers, signatures checked: " + ", ".join(
        kinds
    )
    codes = ("verified",) * len(events) if arrived else ("missing",)
    return [Outcome(text, codes, arrived and not mall.receiver.refused)]


def replayed(mall: Mall) -> list[Outcome]:
    """The bookshop asks for its refund event again: it arrives, and is dropped."""
    shop = BOOKSHOP
    refunds = [e for e in mall.receiver.events if (e.merchant, e.type) == (shop.slug, REFUNDED)]
    if len(refunds) != 1:
        return [Outcome(f"{shop.display_name} has no refund event to replay", ("none",), False)]
    event = refunds[0]
    headers = mall.merchants[shop].headers
    before = len(mall.receiver.duplicates)
    answer = mall.post(f"/v1/merchant/events/{event.event_id}/replay", headers)
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while len(mall.receiver.duplicates) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    dropped = [d for d in mall.receiver.duplicates[before:] if d.event_id == event.event_id]
    text = f"{shop.display_name} replays {event.type}: the same event id arrives again, dropped"
    codes = (str(answer.status_code), "duplicate" if dropped else "missing")
    return [Outcome(text, codes, codes == ("202", "duplicate"))]


def forged(mall: Mall) -> list[Outcome]:
    """A delivery signed with a secret that is not the endpoint's is refused."""
    shop = CAFE
    body = json.dumps({"id": "evt_" + "0" * 32, "type": "payout.paid"}).encode()
    now_s = mall.clock.now_ns() // NS_PER_S
    header = signature_header(FORGER_SECRET, now_s, body)
    with httpx.Client(trust_env=False) as outsider:
        answer = outsider.post(
            mall.receiver.url(shop.slug),
            content=body,
            headers={"Millet-Signature": header, "Content-Type": "application/json"},
        )
    reasons = [r.reason for r in mall.receiver.refused if r.merchant == shop.slug]
    text = f"a payout.paid forged to {shop.display_name}'s endpoint is refused"
    codes = (str(answer.status_code), *reasons[-1:])
    return [Outcome(text, codes, codes == ("400", SignatureInvalid.code))]


# -- the day's payouts ------------------------------------------------------------------


def payouts(mall: Mall) -> list[Outcome]:
    """Past midnight, China time, the server pays each merchant what it is owed for the
    day before (as its maintenance does); each merchant reads its payout."""
    owed = {shop: _balance(mall, shop) for shop in mall.merchants}
    day = past_midnight(mall.clock)
    made = mall.payouts.run_day(day)
    ours = {m.id for m in mall.merchants.values()}
    ours_paid = [p for p in made if f"{p.merchant_id:032x}" in ours]
    text = f"past midnight the server pays the merchants out for {day.isoformat()}"
    lines = [Outcome(text, (f"{len(ours_paid)} payouts",), len(ours_paid) == len(ours))]
    for shop, merchant in mall.merchants.items():
        lines.append(_payout_line(mall, shop, merchant, owed[shop]))
    return lines


def _payout_line(mall: Mall, shop: Shop, merchant: Onboarded, owed_fen: int) -> Outcome:
    listed = mall.http.get("/v1/merchant/payouts", headers=merchant.headers).json()["items"]
    none: dict[str, Any] = {"id": "", "amount_fen": 0, "status": "none"}
    payout: dict[str, Any] = listed[0] if listed else none
    credited = mall.bank.balance_fen(shop.bank_code, merchant.account_number)
    mall.paid_out[shop] = (owed_fen, payout["amount_fen"])
    if payout["status"] == "paid":
        mall.expect(shop, ("payout.paid", payout["id"]))
    left_fen = _balance(mall, shop)
    text = (
        f"{shop.display_name} was owed {cny(owed_fen)}: {cny(payout['amount_fen'])} paid out, "
        f"{shop.bank_code} …{merchant.account_number[-4:]} credited {cny(credited)}, "
        f"{cny(left_fen)} left"
    )
    as_expected = payout["status"] == "paid" and payout["amount_fen"] == owed_fen == credited
    as_expected = as_expected and left_fen == 0
    return Outcome(text, (payout["status"],), as_expected)


def past_midnight(clock: ManualClock) -> datetime.date:
    """Move the clock just past the next midnight, China time; the day that ended."""
    today = cst_date(clock.now_ns())
    midnight = datetime.datetime.combine(today + datetime.timedelta(days=1), datetime.time(), CST)
    wait_ns = int(midnight.timestamp()) * NS_PER_S - clock.now_ns() + PAST_MIDNIGHT_S * NS_PER_S
    clock.advance(nanoseconds=wait_ns)
    return today


def every_delivery(mall: Mall) -> list[Outcome]:
    arrived = mall.receiver.wait_for(mall.expected, DELIVERY_WAIT_S)
    events = mall.receiver.events
    payouts_told = sum(e.type == "payout.paid" for e in events)
    missing = len(mall.expected - {(e.merchant, e.type, e.object_id) for e in events})
    refused = [r for r in mall.receiver.refused if r.reason != SignatureInvalid.code]
    text = (
        f"{payouts_told} payout.paid arrive; of all {len(events)} events every one verified, "
        f"{len(mall.receiver.duplicates)} duplicate dropped, {missing} missing"
    )
    codes = ("verified",) if arrived and not refused else ("missing",)
    return [Outcome(text, codes, arrived and not refused and missing == 0)]


# -- the steps --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    label: str
    play: Callable[[Mall], list[Outcome]]


STEPS = (
    Step("merchant", onboard_merchants),
    Step("shopper", open_wallets),
    Step("in-app", in_app_with_fingerprint),
    Step("capture", held_and_captured_in_part),
    Step("in-app", in_app_with_pin),
    Step("qr", static_qr),
    Step("qr", dynamic_qr),
    Step("code", payment_code),
    Step("refund", partial_refund),
    Step("coins", buy_coins),
    Step("coins", pay_in_coins),
    Step("webhooks", deliveries),
    Step("replay", replayed),
    Step("forged", forged),
    Step("payout", payouts),
    Step("webhooks", every_delivery),
)


# -- helpers --------------------------------------------------------------------------


def _paid(mall: Mall, shop: Shop, intent: Any, paid: httpx.Response, text: str) -> Outcome:
    if paid.status_code == 200:
        mall.expect(shop, ("payment_intent.succeeded", intent["id"]))
    return Outcome(text, (_status(paid),), _status(paid) == "succeeded")


def _status(answer: httpx.Response) -> str:
    """The answer's resource status, or its error code."""
    body = answer.json()
    return str(body["status"]) if "status" in body else _error_code(answer)


def _error_code(answer: httpx.Response) -> str:
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    return str(error["code"]) if error else f"http_{answer.status_code}"


def _refused(text: str, answer: httpx.Response) -> Outcome:
    return Outcome(text, (_error_code(answer),), False)


def _balance(mall: Mall, shop: Shop) -> int:
    me = mall.http.get("/v1/merchant", headers=mall.merchants[shop].headers).json()
    return int(me["balance"]["posted_fen"])


def merchants_table(mall: Mall) -> Table:
    table = Table(title="merchants", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("merchant", "MCC", "bank"):
        table.add_column(name)
    for name in ("events", "owed", "paid out"):
        table.add_column(name, justify="right")
    for shop, merchant in mall.merchants.items():
        owed, paid = mall.paid_out.get(shop, (0, 0))
        events = sum(e.merchant == shop.slug for e in mall.receiver.events)
        table.add_row(
            shop.display_name, shop.mcc, f"{shop.bank_code} …{merchant.account_number[-4:]}",
            str(events), cny(owed), cny(paid),
        )  # fmt: skip
    return table
