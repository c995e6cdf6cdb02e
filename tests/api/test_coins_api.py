"""The coin endpoints: the merchant list, the coin balance, buying and spending coins, on
both engines.

Buying and spending move value only with an Idempotency-Key and an approval (PIN or quick
pay); a retry moves once; a decline is 402 naming the limit or reason; no user can pay
with another user's bank account; and no endpoint turns coins into cash. Each test ends
with the ledger's own verification and the coin liability check.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from milletpay.wallet import MERCHANTS, CoinService, MerchantCategory

from .wallet_world import BANK, PIN, Person, World, bound_phone, phone_approval

DIGITAL_GOODS = [m.merchant_id for m in MERCHANTS.values() if m.category in set(MerchantCategory)]
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def coin_service(world: World) -> CoinService:
    service: CoinService = world.client.app.state.coins  # type: ignore[attr-defined]
    return service


def buy(world: World, person: Person, coins: object, key: str | None = None, **body: Any) -> Any:
    """Buy from the wallet balance with the PIN, unless `body` says otherwise."""
    payload = {"coins": coins, "source": "balance", "pin": PIN, **body}
    return world.post("/v1/me/coins/purchases", person, payload, key or uuid.uuid4().hex)


def buy_by_bank(world: World, person: Person, coins: int, key: str | None = None) -> Any:
    return buy(
        world, person, coins, key, source="bank_account", bank_account_id=person.bank_account_id
    )


def spend(
    world: World, person: Person, merchant_id: str, coins: int, key: str | None = None
) -> Any:
    payload = {"merchant_id": merchant_id, "coins": coins, "pin": PIN}
    return world.post("/v1/me/coins/spends", person, payload, key or uuid.uuid4().hex)


def coins_of(world: World, person: Person) -> int:
    answer = world.client.get("/v1/me/coins", headers=person.headers)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"coins"}
    return int(answer.json()["coins"])


def funded(world: World, amount_fen: int = 100_000) -> Person:
    person = world.person()
    assert world.top_up(person, amount_fen).status_code == 201
    return person


def test_the_coin_merchants_are_public_and_only_those_that_take_coins(world: World) -> None:
    listed = world.client.get("/v1/coin-merchants")  # no session needed
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()] == DIGITAL_GOODS
    assert listed.json()[0] == {"id": "app_store", "name": "Millet App Store", "category": "apps"}
    assert "lotus_mart" not in {m["id"] for m in listed.json()}

    coin_service(world).refund_service_shutdown("millet_video")
    after = world.client.get("/v1/coin-merchants").json()
    assert [m["id"] for m in after] == [m for m in DIGITAL_GOODS if m != "millet_video"]


def test_buying_from_the_balance_and_by_bank_account_then_spending(world: World) -> None:
    alice = funded(world, 50_000)
    assert coins_of(world, alice) == 0

    bought = buy(world, alice, 60)
    assert bought.status_code == 201, bought.text
    answer = bought.json()
    assert HEX_ID.match(answer.pop("operation_id"))
    assert answer == {
        "coins": 60,
        "status": "completed",
        "source": "balance",
        "paid_fen": 6_000,
        "paid": "60.00",
    }
    assert world.balance(alice) == 50_000 - 6_000

    by_bank = buy_by_bank(world, alice, 30)
    assert by_bank.status_code == 201, by_bank.text
    assert (by_bank.json()["source"], by_bank.json()["paid_fen"]) == ("bank_account", 3_000)
    assert world.bank.balance_fen(BANK, alice.account_number) == 10_000_000 - 50_000 - 3_000
    assert world.balance(alice) == 50_000 - 6_000
    assert coins_of(world, alice) == 90

    spent = spend(world, alice, "theme_store", 25)
    assert spent.status_code == 201, spent.text
    answer = spent.json()
    assert HEX_ID.match(answer.pop("operation_id"))
    assert answer == {"coins": 25, "status": "completed", "merchant_id": "theme_store"}
    assert coins_of(world, alice) == 65
    assert world.balance(alice) == 50_000 - 6_000  # spending coins moves no CNY


def test_a_retry_with_the_same_key_replays_and_moves_once(world: World) -> None:
    alice = funded(world, 50_000)
    first = buy(world, alice, 40, "c-1")
    again = buy(world, alice, 40, "c-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert coins_of(world, alice) == 40
    assert world.balance(alice) == 50_000 - 4_000

    spent = spend(world, alice, "game_center", 15, "s-1")
    replayed = spend(world, alice, "game_center", 15, "s-1")
    assert spent.status_code == replayed.status_code == 201
    assert replayed.json() == spent.json()
    assert coins_of(world, alice) == 25

    for reused in (buy(world, alice, 41, "c-1"), spend(world, alice, "game_center", 16, "s-1")):
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # A key is the user's for every operation: a coin key cannot also buy coins by bank.
    assert buy_by_bank(world, alice, 40, "c-1").status_code == 409

    body = {"coins": 1, "source": "balance", "pin": PIN}
    missing = world.post("/v1/me/coins/purchases", alice, body)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    missing = world.post("/v1/me/coins/spends", alice, {"merchant_id": "app_store", **body})
    assert missing.status_code == 400
    assert (coins_of(world, alice), world.balance(alice)) == (25, 50_000 - 4_000)


def test_a_missing_or_wrong_pin_is_refused_and_nothing_moves(world: World) -> None:
    alice = funded(world, 50_000)
    neither = world.post("/v1/me/coins/purchases", alice, {"coins": 10, "source": "balance"}, "c-1")
    assert neither.status_code == 400
    assert neither.json()["error"]["code"] == "approval_required"
    wrong = buy(world, alice, 10, "c-1", pin="975310")
    assert wrong.status_code == 400
    assert (wrong.json()["error"]["code"], wrong.json()["error"]["field"]) == ("pin_wrong", "pin")
    assert buy(world, alice, 10, "c-1").status_code == 201  # a refused PIN spends no key
    body = {"merchant_id": "app_store", "coins": 5, "pin": "975310"}
    assert world.post("/v1/me/coins/spends", alice, body, "s-1").status_code == 400
    assert (coins_of(world, alice), world.balance(alice)) == (10, 50_000 - 1_000)


def test_bad_input_names_the_field(world: World) -> None:
    alice = funded(world, 50_000)
    for coins in (0, -1, 1.5, 10**11 + 1, "ten"):
        bad = buy(world, alice, coins)
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["field"] == "coins"
    bad = buy(world, alice, 10, source="card")
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "source")
    no_account = buy(world, alice, 10, source="bank_account")
    assert (no_account.status_code, no_account.json()["error"]["field"]) == (
        422,
        "bank_account_id",
    )
    stray = buy(world, alice, 10, bank_account_id=alice.bank_account_id)
    assert (stray.status_code, stray.json()["error"]["field"]) == (422, "bank_account_id")
    assert (coins_of(world, alice), world.balance(alice)) == (0, 50_000)


def test_unknown_non_digital_goods_and_shut_down_merchants_are_refused(world: World) -> None:
    alice = funded(world, 50_000)
    assert buy(world, alice, 20).status_code == 201

    unknown = spend(world, alice, "no_such_shop", 5)
    assert unknown.status_code == 404, unknown.text
    error = unknown.json()["error"]
    assert (error["code"], error["field"]) == ("coin_merchant_unknown", "merchant_id")
    groceries = spend(world, alice, "lotus_mart", 5)
    assert groceries.status_code == 400
    assert groceries.json()["error"]["code"] == "coin_merchant_not_digital_goods"
    coin_service(world).refund_service_shutdown("millet_music")
    closed = spend(world, alice, "millet_music", 5)
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "coin_merchant_shut_down"
    assert coins_of(world, alice) == 20


def test_spending_more_coins_than_held_is_402_insufficient_coins(world: World) -> None:
    alice = funded(world, 50_000)
    assert buy(world, alice, 20).status_code == 201

    short = spend(world, alice, "dragon_quest", 21, "s-1")

    assert short.status_code == 402, short.text
    error = short.json()["error"]
    assert (error["code"], error["field"]) == ("insufficient_coins", "coins")
    assert HEX_ID.match(error["operation_id"])
    assert spend(world, alice, "dragon_quest", 21, "s-1").json() == short.json()
    assert coins_of(world, alice) == 20
    broke = buy(world, world.person(), 1)
    assert broke.status_code == 402
    assert broke.json()["error"]["code"] == "insufficient_balance"


def test_a_bank_decline_is_402_with_the_banks_reason(world: World) -> None:
    alice = world.person()
    world.bank.close_account(BANK, alice.account_number)

    declined = buy_by_bank(world, alice, 5)

    assert declined.status_code == 402, declined.text
    error = declined.json()["error"]
    assert (error["code"], error["reason"]) == ("bank_declined", "account_closed")
    assert coins_of(world, alice) == 0


def test_a_class_i_coin_purchase_from_balance_counts_toward_the_lifetime_limit(
    world: World,
) -> None:
    alice, bob = funded(world, 200_000), world.person()  # both Class I: 1000 CNY lifetime
    assert world.p2p(alice, bob.phone, 60_000).status_code == 201

    over = buy(world, alice, 500, "c-1")

    assert over.status_code == 402, over.text
    error = over.json()["error"]
    assert (error["code"], error["field"]) == ("tier_limit_exceeded", "coins")
    assert (error["limit_fen"], error["remaining_fen"]) == (100_000, 40_000)
    assert "1000.00 CNY" in error["message"]
    assert buy(world, alice, 400).status_code == 201
    assert buy(world, alice, 1).json()["error"]["code"] == "tier_limit_exceeded"
    assert world.p2p(alice, bob.phone, 1).json()["error"]["code"] == "tier_limit_exceeded"
    # By bank account it is money in from a bank, not a balance payment.
    assert buy_by_bank(world, alice, 100).status_code == 201
    assert coins_of(world, alice) == 500
    assert world.balance(alice) == 200_000 - 60_000 - 40_000


def test_no_user_can_buy_with_another_users_bank_account(world: World) -> None:
    alice, mallory = world.person(), world.person()
    for account in (alice.bank_account_id, "not-an-id"):
        stolen = buy(world, mallory, 10, source="bank_account", bank_account_id=account)
        assert stolen.status_code == 404, stolen.text
        error = stolen.json()["error"]
        assert (error["code"], error["field"]) == (
            "linked_bank_account_not_found",
            "bank_account_id",
        )
    assert world.bank.balance_fen(BANK, alice.account_number) == 10_000_000
    assert coins_of(world, mallory) == 0

    assert world.client.get("/v1/me/coins").status_code == 401
    body = {"coins": 1, "source": "balance", "pin": PIN}
    assert world.client.post("/v1/me/coins/purchases", json=body).status_code == 401


def test_quick_pay_approves_exactly_the_coin_purchase_or_spend_it_was_issued_for(
    world: World,
) -> None:
    alice = funded(world, 50_000)
    phone = bound_phone(world, alice, "phone-a")

    purchase = {"idempotency_key": "qp-1", "kind": "coin_purchase", "source": "balance"}
    assertion = phone_approval(world, alice, phone, {**purchase, "coins": 50})
    body = {"coins": 50, "source": "balance", "quick_pay_assertion": assertion}
    bought = world.post("/v1/me/coins/purchases", alice, body, "qp-1")
    assert bought.status_code == 201, bought.text

    by_bank = {**purchase, "idempotency_key": "qp-2", "source": "bank_account"}
    assertion = phone_approval(
        world, alice, phone, {**by_bank, "bank_account_id": alice.bank_account_id, "coins": 5}
    )
    body = {
        "coins": 5,
        "source": "bank_account",
        "bank_account_id": alice.bank_account_id,
        "quick_pay_assertion": assertion,
    }
    assert world.post("/v1/me/coins/purchases", alice, body, "qp-2").status_code == 201

    spend_payment = {"idempotency_key": "qp-3", "kind": "coin_spend", "merchant_id": "app_store"}
    assertion = phone_approval(world, alice, phone, {**spend_payment, "coins": 10})
    # Approved for 10 coins at the app store: not for 11, nor for the theme store.
    for merchant_id, coins in (("app_store", 11), ("theme_store", 10)):
        body = {"merchant_id": merchant_id, "coins": coins, "quick_pay_assertion": assertion}
        refused = world.post("/v1/me/coins/spends", alice, body, "qp-3")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["field"] == "quick_pay_assertion"
    assertion = phone_approval(world, alice, phone, {**spend_payment, "coins": 10})
    body = {"merchant_id": "app_store", "coins": 10, "quick_pay_assertion": assertion}
    assert world.post("/v1/me/coins/spends", alice, body, "qp-3").status_code == 201

    incomplete = world.client.post(
        "/v1/me/quick-pay/challenges",
        json={"device_id": "phone-a", **spend_payment, "amount_fen": 1_000},
        headers=alice.headers,
    )
    assert (incomplete.status_code, incomplete.json()["error"]["field"]) == (422, "coins")
    assert coins_of(world, alice) == 50 + 5 - 10
    assert world.balance(alice) == 50_000 - 5_000


def test_no_endpoint_turns_coins_into_cash(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    coin_paths = {
        (path, method) for path, item in paths.items() if "coin" in path for method in item
    }
    assert coin_paths == {
        ("/v1/coin-merchants", "get"),
        ("/v1/me/coins", "get"),
        ("/v1/me/coins/purchases", "post"),
        ("/v1/me/coins/spends", "post"),
    }
