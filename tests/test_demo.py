"""`millet demo` plays a day that balances, on SQLite and PostgreSQL, as often as it is run.

The wallet scene (`sim.demo_wallet`) is checked against the services' own answers: the
Class I decline at its tier limit, the tiers reached, coins, and money that adds up. The
banks scene (`sim.demo_cards`) against the token service's tables: tokens per bank, the
red decline, the step-up, the lost phone, and no card number in clear.
Also the two commands a newcomer types after it: `millet demo` and `millet ledger verify`
through the CLI, and `ledger verify` catching a balance changed behind the ledger's back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from milletpay.cli import app
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.core.money import Money
from milletpay.identity import TIERS, IdentityService, SimulatedSms
from milletpay.identity.kyc import TIER_BY_LEVEL
from milletpay.ledger import Account, AccountFlags, Ledger
from milletpay.ledger.storage import encode_id
from milletpay.risk import DeclineCode, OperationKind
from milletpay.sim.demo import (
    ACCOUNTS,
    ISSUER,
    LI_WEI,
    MERCHANT,
    SCENES,
    WANG_FANG,
    ZHANG_MIN,
    ZHANG_MIN_COINS,
    Side,
    run_demo,
)
from milletpay.sim.demo_cards import (
    CARDHOLDERS,
    BanksScene,
    pans_in_files,
    pans_in_rows,
    play_banks_scene,
)
from milletpay.sim.demo_wallet import (
    CAST,
    LIU_YANG,
    RETRIED_P2P_FEN,
    ZHAO_LEI,
    WalletScene,
    play_wallet_scene,
)
from milletpay.wallet import (
    FEN_PER_COIN,
    CoinOperationKind,
    CoinOutcome,
    CoinService,
    OperationStatus,
    SimulatedBankGateway,
    WalletService,
)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _platform_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform key ring the demo reads (`MILLET_DATA_KEYS`): one per test, never a
    key file in the working directory."""
    key = base64.b64encode(os.urandom(32)).decode("ascii")
    monkeypatch.setenv("MILLET_DATA_KEYS", json.dumps({"1": key}))


# What one day leaves in the books, by the scenes' own arithmetic (fen; coins for coins).
ONE_DAY = {
    LI_WEI.id: 800_00 - 88_00 - 36_00 - 20_00 - 15_00,  # the expired hold gave its 30.00 back
    WANG_FANG.id: 500_00 + 88_00 - 45_00 - 152_30 + 20_00,
    ZHANG_MIN.id: 120_00 - 60_00 + 15_00,  # the voided hold and the decline moved nothing
    MERCHANT.id: 45_00 - 27 + 36_00 + 152_30,
    ZHANG_MIN_COINS.id: 60,
    ISSUER.id: 60,
}


def play(url: str) -> tuple[bool, str]:
    console = Console(file=io.StringIO(), width=100)
    ok = run_demo(url, console)
    output = console.file.getvalue()
    assert isinstance(output, str)
    return ok, output


def balances(url: str) -> dict[int, int]:
    """The demo accounts' balances, on the side each grows on."""
    with Ledger.open(url) as ledger:
        found = ledger.lookup_accounts([a.id for a in ACCOUNTS])
    kinds = {a.id: a.kind for a in ACCOUNTS}
    return {
        a.id: a.balance_debit_minus_credit
        if kinds[a.id].side is Side.DEBIT
        else a.balance_credit_minus_debit
        for a in found
    }


def transfer_count(url: str) -> int:
    with Ledger.open(url) as ledger:
        return ledger.verify().transfers


def test_demo_balances_the_books_and_a_second_run_plays_a_new_day(database_url: str) -> None:
    ok, output = play(database_url)
    assert ok, output
    assert "ledger verify: ok" in output
    assert "✗" not in output
    after_one = balances(database_url)
    for account_id, amount in ONE_DAY.items():
        assert after_one[account_id] == amount, account_id
    transfers_one_day = transfer_count(database_url)

    ok, output = play(database_url)
    assert ok, output
    assert "exists ×11" in output, "the accounts are opened once"
    assert "(cast 2 on this database)" in output, "the wallet scene signs up a new cast"
    assert "through the token service (cast 2)" in output, "so does the banks scene"
    assert "tap phones at shops (cast 2)" in output, "and the shopping scene"
    assert "through the HTTP API (cast 2)" in output, "and the mall scene"
    assert "ledger verify: ok" in output
    assert balances(database_url) == {i: 2 * amount for i, amount in after_one.items()}
    assert transfer_count(database_url) == 2 * transfers_one_day


def test_demo_shopping_scene_taps_through_the_network_and_the_banks(tmp_path: Path) -> None:
    ok, output = play(f"sqlite:///{tmp_path / 'millet.db'}")
    assert ok, output
    shopping = output.split("Shopping:")[1]
    for answer in ("approved", "declined", "cdcvm_needed, approved", "timed_out_reversed"):
        assert answer in shopping
    assert "completed ×2" in shopping
    assert "declined 51" in shopping  # the bank's own answer: insufficient funds
    assert "every bank's books verified" in shopping and "✗" not in shopping
    assert "answer no request awaits" not in output


def test_demo_commute_scene_rides_uploads_and_clears_in_six_cities(tmp_path: Path) -> None:
    ok, output = play(f"sqlite:///{tmp_path / 'millet.db'}")
    assert ok, output
    commute = output.split("Commute:")[1]
    assert "✗" not in commute
    for answer in ("balance_negative", "torn, resolved", "blacklisted", "gaps 0", "0 differ"):
        assert answer in commute
    for city in ("shanghai", "shenzhen", "beijing", "guangdong", "suzhou", "wuhan"):
        assert city in commute


def test_demo_shows_every_scene_with_the_ledgers_answers(tmp_path: Path) -> None:
    ok, output = play(f"sqlite:///{tmp_path / 'millet.db'}")
    assert ok, output
    ledger_day, wallet_day = output.split("Wallets:")
    assert ledger_day.count("✓") == len(SCENES)
    assert "✗" not in wallet_day
    for answer in ("exceeds_credits, linked_event_failed", "ok ×2, exists ×2", "expired"):
        assert answer in output
    assert "ledger 156 · CNY" in output and "ledger 900001 · XCN" in output
    assert "641.00 CNY" in output, "Li Wei's wallet at the end of the day"


def test_demo_fails_when_its_account_ids_are_taken_by_other_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'millet.db'}"
    with Ledger.open(url) as ledger:
        assert ledger.create_accounts([Account(LI_WEI.id, 156, 1, AccountFlags.HISTORY)]) == ["ok"]
    ok, output = play(url)
    assert not ok
    assert "exists_with_different_flags" in output
    assert f"1 of {output.count('✓') + output.count('✗')} scenes went wrong" in output


def test_cli_demo_then_ledger_verify(database_url: str) -> None:
    demo = runner.invoke(app, ["demo", "--database-url", database_url])
    assert demo.exit_code == 0, demo.output
    assert DeclineCode.TIER_LIMIT_EXCEEDED.value in demo.output
    assert demo.output.rstrip().splitlines()[-1].startswith("ledger verify: ok")

    verify = runner.invoke(app, ["ledger", "verify", "--database-url", database_url])
    assert verify.exit_code == 0, verify.output
    assert "ledger verify: ok" in verify.output


def test_ledger_verify_names_an_account_whose_balance_was_changed_behind_its_back(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'millet.db'}"
    ok, output = play(url)
    assert ok, output
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = :id"),
            {"id": encode_id(WANG_FANG.id)},
        )
        assert changed.rowcount == 1
    engine.dispose()

    verify = runner.invoke(app, ["ledger", "verify", "--database-url", url])
    assert verify.exit_code == 1, verify.output
    assert f"account {WANG_FANG.id}: credits_posted" in verify.output
    assert "ledger 156: posted debits" in verify.output


# ---- the wallet scene ---------------------------------------------------------------


@dataclass(frozen=True)
class WalletDay:
    """The wallet scene played alone, and services of the test's own to check it with."""

    scene: WalletScene
    output: str
    wallet: WalletService
    coins: CoinService


@pytest.fixture
def wallet_day(database_url: str) -> Iterator[WalletDay]:
    clock = ManualClock(time.time_ns())
    console = Console(file=io.StringIO(), width=100)
    keyring = KeyRing.generate()
    with Ledger.open(database_url, clock=clock) as ledger:
        scene = play_wallet_scene(ledger, clock, console, keyring)
        assert ledger.verify().ok
        output = console.file.getvalue()
        assert isinstance(output, str)
        bank = SimulatedBankGateway()
        # The same key ring: the scene's users are readable by the platform afterwards.
        identity = IdentityService(ledger.engine, keyring, clock, SimulatedSms())
        wallet = WalletService(ledger, identity, ledger.engine, clock, bank)
        coins = CoinService(ledger, wallet, identity, ledger.engine, clock, bank)
        yield WalletDay(scene, output, wallet, coins)


def test_wallet_scene_declines_the_class_i_user_at_the_tier_limit(wallet_day: WalletDay) -> None:
    scene, output, wallet = wallet_day.scene, wallet_day.output, wallet_day.wallet
    assert all(line.as_expected for line in scene.lines), output
    (declined,) = [a for a in scene.answers if not a.approved]
    assert declined.kind is OperationKind.P2P
    assert declined.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
    class_i = TIER_BY_LEVEL[1]
    assert declined.limit == class_i.limit_fen
    zhao_lei = scene.user_ids[CAST.index(ZHAO_LEI)]
    paid_before = sum(
        item.amount_fen
        for item in wallet.history(zhao_lei).items
        if item.kind is OperationKind.P2P
        and item.status is OperationStatus.COMPLETED
        and item.operation_id < declined.operation_id
    )
    assert declined.remaining == class_i.limit_fen - paid_before
    (line,) = [line for line in scene.lines if DeclineCode.TIER_LIMIT_EXCEEDED in line.codes]
    limit, remaining = (Money(f, "CNY") for f in (class_i.limit_fen, declined.remaining))
    assert f"limit {limit}, {remaining} remaining" in line.text
    assert DeclineCode.TIER_LIMIT_EXCEEDED.value in output
    for tier in TIERS:
        assert tier.name in output


def test_wallet_scene_money_adds_up_and_coins_are_bought_and_spent(wallet_day: WalletDay) -> None:
    scene, output = wallet_day.scene, wallet_day.output
    wallet, coins = wallet_day.wallet, wallet_day.coins
    balances_fen = sum(wallet.balance(user_id).posted_fen for user_id in scene.user_ids)
    history = [item for u in scene.user_ids for item in wallet.history(u).items]
    done = [item for item in history if item.status is OperationStatus.COMPLETED]
    top_ups_fen = sum(i.amount_fen for i in done if i.kind is OperationKind.TOP_UP)
    withdrawn_fen = sum(i.amount_fen for i in done if i.kind is OperationKind.WITHDRAW)
    coin_answers = [a for a in scene.answers if isinstance(a, CoinOutcome) and a.approved]
    bought = {
        kind: sum(a.amount_coins for a in coin_answers if a.kind is kind)
        for kind in CoinOperationKind
    }
    from_balance_fen = bought[CoinOperationKind.PURCHASE_FROM_BALANCE] * FEN_PER_COIN
    assert balances_fen == top_ups_fen - withdrawn_fen - from_balance_fen
    assert withdrawn_fen > 0 and from_balance_fen > 0 and bought[CoinOperationKind.PURCHASE_BY_CARD]
    purchased = (
        bought[CoinOperationKind.PURCHASE_FROM_BALANCE] + bought[CoinOperationKind.PURCHASE_BY_CARD]
    )
    spent = bought[CoinOperationKind.SPEND]
    assert spent > 0
    assert sum(coins.coins(u) for u in scene.user_ids) == purchased - spent
    assert coins.coin_liability_check().balanced
    assert "coin_merchant_not_digital_goods" in output
    assert str(Money(balances_fen, "CNY")) in output, "the wallets' total is printed"


def test_wallet_scene_retry_with_the_same_key_moves_money_once(wallet_day: WalletDay) -> None:
    (retry,) = [line for line in wallet_day.scene.lines if line.codes == ("completed",) * 2]
    assert retry.as_expected, wallet_day.output
    liu_yang = wallet_day.scene.user_ids[CAST.index(LIU_YANG)]
    sent = [
        item
        for item in wallet_day.wallet.history(liu_yang).items
        if item.kind is OperationKind.P2P and not item.incoming
    ]
    assert [item.amount_fen for item in sent] == [RETRIED_P2P_FEN], "one operation, not two"


# ---- the banks scene ----------------------------------------------------------------


@dataclass(frozen=True)
class CardsDay:
    scene: BanksScene
    output: str
    tokens: list[tuple[str, str]]  # (bank code, state) of every token, read back by SQL


@pytest.fixture
def cards_day(database_url: str) -> Iterator[CardsDay]:
    clock = ManualClock(time.time_ns())
    console = Console(file=io.StringIO(), width=120)
    with Ledger.open(database_url, clock=clock) as ledger:
        scene = play_banks_scene(ledger, clock, console, database_url, KeyRing.generate())
        with ledger.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT bank_code, state FROM tokens")).all()
    output = console.file.getvalue()
    assert isinstance(output, str)
    yield CardsDay(scene, output, [(r.bank_code, r.state) for r in rows])


def test_banks_scene_counts_tokens_per_bank_as_the_token_service_holds_them(
    cards_day: CardsDay,
) -> None:
    held: dict[str, dict[str, int]] = {}
    for bank_code, state in cards_day.tokens:
        held.setdefault(bank_code, {}).setdefault(state, 0)
        held[bank_code][state] += 1
    assert {code: dict(c) for code, c in cards_day.scene.tokens_by_bank.items()} == held
    assert held == {"ICBC": {"active": 1}, "CCB": {"suspended": 2}, "BOC": {"active": 1}}
    assert len({h.bank_code for h in CARDHOLDERS}) == 3


def test_banks_scene_has_a_red_decline_a_step_up_and_a_lost_phone(cards_day: CardsDay) -> None:
    scene, output = cards_day.scene, cards_day.output
    assert all(line.as_expected for line in scene.lines), output
    codes = [line.codes for line in scene.lines]
    assert ("idv_declined: cvn2_mismatch",) in codes
    assert ("step_up", "inactive") in codes and ("activated",) in codes
    assert ("suspended", "suspended") in codes
    assert "code texted to +86139****9000" in output
    assert "2 tokens suspended" in output


def test_banks_scene_finds_every_card_number_sealed_and_none_in_clear(
    cards_day: CardsDay,
) -> None:
    scene = cards_day.scene
    assert (scene.pans_issued, scene.pans_vaulted, scene.pans_in_clear) == (4, 3, 0)
    assert "4 card numbers issued, 3 sealed in the vault" in cards_day.output
    assert "none in clear" in cards_day.output


NOT_A_CARD = "6200000000000001"


def test_the_leak_check_finds_a_card_number_in_a_file_or_a_row(
    tmp_path: Path, database_url: str
) -> None:
    # Written in clear on purpose: a made-up number, not a card (no Luhn check digit)
    # and not in tests/cards/pans.py, so that the session's own leak scan passes.
    written = tmp_path / "leaky.db"
    written.write_bytes(b"\x00junk" + NOT_A_CARD.encode() + b"junk")
    assert pans_in_files([written], [NOT_A_CARD]) == 1
    assert pans_in_files([written], ["6200000000000013"]) == 0
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER, body VARCHAR(40))"))
        conn.execute(sa.text("INSERT INTO notes VALUES (1, :b)"), {"b": f"card {NOT_A_CARD}"})
    assert pans_in_rows([engine], [NOT_A_CARD]) == 1
    engine.dispose()
