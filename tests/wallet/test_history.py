"""History pages newest first behind an opaque cursor; statements add up from the ledger."""

from __future__ import annotations

import datetime

import pytest

from milletpay.core.clock import NS_PER_S
from milletpay.risk import OperationKind
from milletpay.wallet import (
    HISTORY_PAGE_LIMIT_MAX,
    CursorInvalid,
    MonthInvalid,
    PageLimitInvalid,
)

from .conftest import World, yuan

CST = datetime.timezone(datetime.timedelta(hours=8))


def set_clock(world: World, when: datetime.datetime) -> None:
    world.clock.advance(nanoseconds=int(when.timestamp()) * NS_PER_S - world.clock.now_ns())


def test_history_pages_newest_first_until_the_cursor_runs_out(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    for n in range(4):
        world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(10 + n), f"t{n}")
        world.clock.advance(seconds=1)
    world.wallet.p2p(bob.user_id, alice.phone, 1, "p1")  # declined: Bob has nothing
    world.wallet.top_up(bob.user_id, bob.linked_account_id, yuan(5), "t1")
    world.wallet.p2p(bob.user_id, alice.phone, yuan(5), "p2")

    pages, cursor = [], None
    while True:
        page = world.wallet.history(alice.user_id, limit=2, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert [len(items) for items in pages] == [2, 2, 1]
    items = [item for items in pages for item in items]
    assert [item.amount_fen for item in items] == [yuan(5), yuan(13), yuan(12), yuan(11), yuan(10)]
    assert (
        items[0].kind is OperationKind.P2P and items[0].incoming
    )  # received; the decline is Bob's
    times = [item.created_at_ns for item in items]
    assert times == sorted(times, reverse=True)
    assert world.ledger.verify().ok


def test_history_refuses_a_cursor_it_did_not_give_and_an_unbounded_limit(world: World) -> None:
    alice = world.person(2)

    with pytest.raises(CursorInvalid):
        world.wallet.history(alice.user_id, cursor="not-a-cursor!")
    with pytest.raises(PageLimitInvalid):
        world.wallet.history(alice.user_id, limit=HISTORY_PAGE_LIMIT_MAX + 1)
    with pytest.raises(PageLimitInvalid):
        world.wallet.history(alice.user_id, limit=0)
    assert world.wallet.history(alice.user_id, limit=HISTORY_PAGE_LIMIT_MAX).items == ()
    assert world.ledger.verify().ok


def test_monthly_statements_add_up_in_china_time(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    set_clock(world, datetime.datetime(2023, 11, 30, 23, 30, tzinfo=CST))
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(500), "t1")
    world.wallet.p2p(alice.user_id, bob.phone, yuan(120), "p1")
    world.clock.advance(seconds=3600)  # 1 December 00:30 in China, still 30 November in UTC
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "t2")
    world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(50), "w1")
    world.wallet.top_up(bob.user_id, bob.linked_account_id, yuan(30), "t1")
    world.wallet.p2p(bob.user_id, alice.phone, yuan(30), "p1")
    world.bank.close_account("ICBC", alice.account_number)
    world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(70), "w2")  # voided

    november = world.wallet.statement(alice.user_id, 2023, 11)
    december = world.wallet.statement(alice.user_id, 2023, 12)
    january = world.wallet.statement(alice.user_id, 2024, 1)

    assert (november.opening_fen, november.credits_fen, november.debits_fen) == (
        0,
        yuan(500),
        yuan(120),
    )
    assert november.closing_fen == yuan(380) == december.opening_fen
    assert (december.credits_fen, december.debits_fen) == (yuan(130), yuan(50))
    assert december.closing_fen == yuan(460) == world.balance_fen(alice)
    assert (january.opening_fen, january.credits_fen, january.debits_fen) == (yuan(460), 0, 0)
    assert january.closing_fen == yuan(460)
    with pytest.raises(MonthInvalid):
        world.wallet.statement(alice.user_id, 2023, 13)
    assert world.ledger.verify().ok
