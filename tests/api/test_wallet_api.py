"""The wallet endpoints: balance, bank accounts, top-up, withdrawal, P2P, history and
statements, on both engines.

Money moves only with an Idempotency-Key and the payment PIN; a retry moves it once; a
decline is 402 naming the limit; and no user can see or move another user's money. Each
test ends with the ledger's own verification.
"""

from __future__ import annotations

import uuid

from .wallet_world import BANK, PIN, World, bound_phone, phone_approval


def test_full_flow_top_up_p2p_by_phone_and_history(world: World) -> None:
    alice, bob = world.person(), world.person()
    banks = world.client.get("/v1/me/bank-accounts", headers=alice.headers)
    assert [b["id"] for b in banks.json()] == [alice.bank_account_id]

    answer = world.top_up(alice, 123_456)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "completed"
    wallet = world.client.get("/v1/me/wallet", headers=alice.headers).json()
    assert wallet == {
        "currency": "CNY",
        "posted_fen": 123_456,
        "available_fen": 123_456,
        "posted": "1234.56",
        "available": "1234.56",
    }
    assert world.bank.balance_fen(BANK, alice.account_number) == 10_000_000 - 123_456

    answer = world.p2p(alice, "+86 " + bob.phone, 20_001)
    assert answer.status_code == 201, answer.text
    assert answer.json()["amount"] == "200.01"
    assert world.balance(alice) == 123_456 - 20_001
    assert world.balance(bob) == 20_001

    history = world.client.get("/v1/me/history?limit=1", headers=alice.headers).json()
    assert [(i["kind"], i["direction"]) for i in history["items"]] == [("p2p", "out")]
    rest = world.client.get(
        f"/v1/me/history?limit=5&cursor={history['next_cursor']}", headers=alice.headers
    ).json()
    assert [(i["kind"], i["direction"]) for i in rest["items"]] == [("top_up", "in")]
    assert rest["next_cursor"] is None
    bobs = world.client.get("/v1/me/history", headers=bob.headers).json()["items"]
    assert [(i["kind"], i["direction"], i["amount_fen"]) for i in bobs] == [("p2p", "in", 20_001)]

    answer = world.post(
        "/v1/me/withdrawals",
        bob,
        {"bank_account_id": bob.bank_account_id, "amount_fen": 1, "pin": PIN},
        "w-1",
    )
    assert answer.status_code == 201, answer.text
    assert world.balance(bob) == 20_000

    # The manual clock stands at 2023-11-15 06:13 China time.
    statement = world.client.get("/v1/me/statements/2023-11", headers=alice.headers)
    assert statement.status_code == 200, statement.text
    assert statement.json()["closing_fen"] == 123_456 - 20_001
    assert statement.json()["credits"] == "1234.56"
    bad = world.client.get("/v1/me/statements/2023-1", headers=alice.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "month_invalid"


def test_a_retry_with_the_same_key_replays_and_moves_money_once(world: World) -> None:
    alice, bob = world.person(), world.person()
    assert world.top_up(alice, 50_000, "t-1").status_code == 201
    first = world.p2p(alice, bob.phone, 10_000, "p-1")
    again = world.p2p(alice, bob.phone, 10_000, "p-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert world.top_up(alice, 50_000, "t-1").headers["Idempotent-Replayed"] == "true"
    assert world.balance(alice) == 40_000
    assert world.balance(bob) == 10_000

    reused = world.p2p(alice, bob.phone, 10_001, "p-1")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert world.balance(alice) == 40_000

    body = {"recipient_phone": bob.phone, "amount_fen": 1, "pin": PIN}
    missing = world.post("/v1/me/p2p-transfers", alice, body)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    assert world.balance(alice) == 40_000


def test_an_idempotency_key_is_at_most_64_visible_ascii_characters(world: World) -> None:
    """The header's key is the wallet operation's key: one rule, checked before anything."""
    alice, bob = world.person(), world.person()
    assert world.top_up(alice, 50_000).status_code == 201
    for bad in ("k" * 65, "with space"):
        answer = world.post(
            "/v1/me/p2p-transfers",
            alice,
            {"recipient_phone": bob.phone, "amount_fen": 1, "pin": PIN},
            bad,
        )
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "idempotency_key_invalid"
        assert answer.json()["error"]["field"] == "Idempotency-Key"
    assert world.p2p(alice, bob.phone, 1, "k" * 64).status_code == 201
    assert world.balance(bob) == 1


def test_a_wrong_pin_is_refused_and_nothing_moves(world: World) -> None:
    alice, bob = world.person(), world.person()
    assert world.top_up(alice, 50_000).status_code == 201
    wrong = world.p2p(alice, bob.phone, 10_000, "k-1", pin="975310")
    assert wrong.status_code == 400
    assert wrong.json()["error"] == {
        "code": "pin_wrong",
        "message": wrong.json()["error"]["message"],
        "field": "pin",
    }
    # A refused PIN does not spend the key: the right PIN may retry with it.
    for _ in range(4):
        world.p2p(alice, bob.phone, 10_000, "k-2", pin="975310")
    locked = world.p2p(alice, bob.phone, 10_000, "k-1")
    assert locked.status_code == 403
    assert locked.json()["error"]["code"] == "pin_locked"
    assert world.balance(alice) == 50_000
    assert world.balance(bob) == 0
    history = world.client.get("/v1/me/history", headers=alice.headers).json()["items"]
    assert [i["kind"] for i in history] == ["top_up"]


def test_a_class_i_limit_decline_is_402_naming_the_limit(world: World) -> None:
    alice, bob = world.person(), world.person()
    assert world.top_up(alice, 200_000).status_code == 201  # the Class I maximum: 2000 CNY
    over = world.top_up(alice, 200_001, "big")
    assert over.status_code == 402, over.text
    error = over.json()["error"]
    assert error["code"] == "per_transaction_limit_exceeded"
    assert "2000.00 CNY" in error["message"]
    assert error["limit_fen"] == 200_000
    assert "remaining_fen" in error
    assert world.top_up(alice, 200_001, "big").json() == over.json()  # a decline stays one

    p2p = world.p2p(alice, bob.phone, 100_001)  # Class I P2P: 1000 CNY
    assert p2p.status_code == 402
    assert p2p.json()["error"]["limit_fen"] == 100_000
    short = world.p2p(bob, alice.phone, 1)
    assert short.status_code == 402
    assert short.json()["error"]["code"] == "insufficient_balance"
    assert world.balance(alice) == 200_000
    assert world.balance(bob) == 0


def test_no_user_can_see_or_move_another_users_money(world: World) -> None:
    alice, mallory = world.person(), world.person()
    assert world.top_up(alice, 50_000).status_code == 201

    # Mallory's /me is Mallory's: she sees only her own wallet and bank accounts.
    assert world.balance(mallory) == 0
    banks = world.client.get("/v1/me/bank-accounts", headers=mallory.headers).json()
    assert [b["id"] for b in banks] == [mallory.bank_account_id]
    history = world.client.get("/v1/me/history", headers=mallory.headers).json()
    assert history["items"] == []

    # Alice's linked account id in Mallory's request: not found, nothing moves.
    for path in ("/v1/me/top-ups", "/v1/me/withdrawals"):
        body = {"bank_account_id": alice.bank_account_id, "amount_fen": 100, "pin": PIN}
        answer = world.post(path, mallory, body, uuid.uuid4().hex)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "linked_bank_account_not_found"

    # A P2P always debits the signed-in user: "paying" oneself from Alice's phone only
    # tries to debit Mallory's empty wallet.
    pulled = world.p2p(mallory, alice.phone, 100)
    assert pulled.status_code == 402
    assert pulled.json()["error"]["code"] == "insufficient_balance"
    # Alice's idempotency key means nothing in Mallory's scope.
    assert world.p2p(mallory, mallory.phone, 100, "shared").status_code == 400
    assert world.balance(alice) == 50_000
    assert world.bank.balance_fen(BANK, alice.account_number) == 10_000_000 - 50_000

    # Without a valid token nothing answers.
    for path in ("/v1/me/wallet", "/v1/me/history", "/v1/me/bank-accounts"):
        assert world.client.get(path).status_code == 401
        bad = {"Authorization": "Bearer x.y"}
        assert world.client.get(path, headers=bad).status_code == 401
    body = {"recipient_phone": alice.phone, "amount_fen": 1, "pin": PIN}
    assert world.client.post("/v1/me/p2p-transfers", json=body).status_code == 401


def test_quick_pay_approves_exactly_the_payment_it_was_issued_for(world: World) -> None:
    alice, bob = world.person(), world.person()
    phone = bound_phone(world, alice, "phone-a")
    assert world.top_up(alice, 50_000).status_code == 201

    payment = {"idempotency_key": "qp-1", "kind": "p2p", "recipient_phone": bob.phone}
    assertion = phone_approval(world, alice, phone, {**payment, "amount_fen": 5_000})
    body = {"recipient_phone": bob.phone, "amount_fen": 5_000, "quick_pay_assertion": assertion}
    paid = world.post("/v1/me/p2p-transfers", alice, body, "qp-1")
    assert paid.status_code == 201, paid.text
    # The assertion is spent: sending it again is refused before anything is replayed.
    again = world.post("/v1/me/p2p-transfers", alice, body, "qp-1")
    assert again.status_code == 403

    # An approval for 50.00 does not approve 500.00, nor the same amount under another key.
    payment["idempotency_key"] = "qp-2"
    assertion = phone_approval(world, alice, phone, {**payment, "amount_fen": 5_000})
    bigger = {"recipient_phone": bob.phone, "amount_fen": 50_000, "quick_pay_assertion": assertion}
    refused = world.post("/v1/me/p2p-transfers", alice, bigger, "qp-2")
    assert refused.status_code == 403
    assert refused.json()["error"]["field"] == "quick_pay_assertion"
    assertion = phone_approval(world, alice, phone, {**payment, "amount_fen": 5_000})
    body["quick_pay_assertion"] = assertion
    assert world.post("/v1/me/p2p-transfers", alice, body, "qp-3").status_code == 403

    neither = {"recipient_phone": bob.phone, "amount_fen": 5_000}
    missing = world.post("/v1/me/p2p-transfers", alice, neither, "qp-4")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "approval_required"

    # Another user cannot ask Alice's phone to approve a payment of theirs.
    mallory = world.person()
    foreign = world.client.post(
        "/v1/me/quick-pay/challenges",
        json={"device_id": "phone-a", **payment, "amount_fen": 1},
        headers=mallory.headers,
    )
    assert foreign.status_code == 404
    assert world.balance(alice) == 45_000
    assert world.balance(bob) == 5_000
