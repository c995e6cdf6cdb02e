"""The issuer host: a bank behind a real ISO 8583 server on 127.0.0.1, a real client as
the card network. Holds, completions and reversals land in the bank's own books; a
repeated request is answered from the bank's record; what the bank cannot use is a
response code, never a dropped link. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from milletpay.banks import Bank
from milletpay.banks.host import (
    HOST_CODES,
    authorization_reference,
    issuer_handler,
    original_reference,
)
from milletpay.network.framing import read_frame, write_frame
from milletpay.network.iso8583 import (
    FieldValue,
    Message,
    encode,
    original_data_elements,
)
from milletpay.network.link import Iso8583Client, Iso8583Server

from .conftest import BankWorld, Holder, yuan

TEST_TIMEOUT_S = 20.0
ACQUIRER = "12345678"


def request(
    holder: Holder,
    amount_fen: int,
    *,
    mti: str = "0100",
    stan: str = "000001",
    terminal: str = "TERM 001",
    **changes: FieldValue,
) -> Message:
    """A contactless purchase for the holder's card (a tap: entry mode 07)."""
    fields: dict[int, FieldValue] = {
        2: holder.card.pan,
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
        41: terminal,
        42: "MERCHANT0000001",
        49: "156",
    }
    fields |= {int(k[1:]): v for k, v in changes.items()}
    return Message(mti, fields)


def follow_up(original: Message, mti: str, stan: str, amount_fen: int | None = None) -> Message:
    """A completion (0220) or reversal (0400, 0420) of `original`."""
    fields = dict(original.fields) | {
        11: stan,
        7: "1126040500",
        90: original_data_elements(original),
    }
    if amount_fen is not None:
        fields[4] = f"{amount_fen:012d}"
    if mti == "0220":
        fields[39] = "00"  # an advice carries the answer given
    return Message(mti, fields)


Scenario = Callable[[Iso8583Client], Awaitable[None]]


def run(bank: Bank, scenario: Scenario) -> None:
    async def main() -> None:
        async with Iso8583Server(issuer_handler(bank)) as server:
            client = await Iso8583Client.connect("127.0.0.1", server.port)
            async with client:
                await asyncio.wait_for(scenario(client), TEST_TIMEOUT_S)

    asyncio.run(main())


def test_an_authorization_is_approved_with_a_hold_in_the_banks_books(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))

    async def scenario(client: Iso8583Client) -> None:
        answer = await client.request(request(holder, yuan(300)))
        assert answer.mti == "0110" and answer.fields[39] == "00"
        assert len(answer.text(38)) == 6

    run(holder.bank, scenario)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.held_fen, balance.available_fen) == (yuan(300), yuan(700))
    assert holder.bank.verify().ok


def test_a_repeated_request_is_answered_from_the_banks_record(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))

    async def scenario(client: Iso8583Client) -> None:
        first = await client.request(request(holder, yuan(300)))
        again = await client.request(request(holder, yuan(300)))
        assert first.fields == again.fields

    run(holder.bank, scenario)
    assert holder.bank.balance(holder.account_id).held_fen == yuan(300)


def test_insufficient_funds_answers_51(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(10))

    async def scenario(client: Iso8583Client) -> None:
        answer = await client.request(request(holder, yuan(300)))
        assert answer.fields[39] == "51" and 38 not in answer.fields

    run(holder.bank, scenario)
    assert holder.bank.balance(holder.account_id).held_fen == 0


def test_a_completion_posts_the_hold_for_field_4(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    original = request(holder, yuan(300))

    async def scenario(client: Iso8583Client) -> None:
        assert (await client.request(original)).fields[39] == "00"
        done = await client.request(follow_up(original, "0220", "000002", yuan(250)))
        assert (done.mti, done.fields[39]) == ("0230", "00")

    run(holder.bank, scenario)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(750), 0)
    assert holder.bank.verify().ok


def test_a_reversal_voids_the_hold(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    original = request(holder, yuan(300))

    async def scenario(client: Iso8583Client) -> None:
        assert (await client.request(original)).fields[39] == "00"
        for stan, mti in (("000002", "0400"), ("000003", "0420")):  # the advice repeats it
            undone = await client.request(follow_up(original, mti, stan))
            assert undone.fields[39] == "00"

    run(holder.bank, scenario)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen, balance.available_fen) == (
        yuan(1_000),
        0,
        yuan(1_000),
    )


def test_a_financial_request_is_authorized_and_posted_at_once(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))

    async def scenario(client: Iso8583Client) -> None:
        answer = await client.request(request(holder, yuan(300), mti="0200"))
        assert (answer.mti, answer.fields[39]) == ("0210", "00")
        again = await client.request(request(holder, yuan(300), mti="0200"))
        assert again.fields == answer.fields

    run(holder.bank, scenario)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(700), 0)


def test_a_stand_in_advice_places_the_hold_and_is_acknowledged(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    advice = request(holder, yuan(100), mti="0120", _39="00", _38="S12345")

    async def scenario(client: Iso8583Client) -> None:
        answer = await client.request(advice)
        assert (answer.mti, answer.fields[39]) == ("0130", "00")

    run(holder.bank, scenario)
    assert holder.bank.balance(holder.account_id).held_fen == yuan(100)


def test_a_refund_credits_the_card_once_and_its_reversal_takes_it_back(
    world: BankWorld,
) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    # An in-app token's refund as the switch forwards it: 81, the token in field 63.
    refund = request(
        holder, yuan(120), mti="0200", _3="200000", _22="812", _63="6288001234567890128"
    )

    async def scenario(client: Iso8583Client) -> None:
        answer = await client.request(refund)
        assert (answer.mti, answer.fields[39], len(answer.text(38))) == ("0210", "00", 6)
        again = await client.request(refund)
        assert again.fields == answer.fields
        assert holder.bank.balance(holder.account_id).posted_fen == yuan(1_120)
        undone = await client.request(follow_up(refund, "0400", "000002"))
        assert (undone.mti, undone.fields[39]) == ("0410", "00")
        repeated = await client.request(follow_up(refund, "0400", "000003"))
        assert repeated.fields[39] == "00"  # told before: taken back once

    run(holder.bank, scenario)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(1_000), 0)
    assert holder.bank.verify().ok


def test_a_refund_never_counts_as_spending(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(10))
    refund = request(holder, yuan(500), mti="0200", _3="200000")
    purchase = request(holder, yuan(400), mti="0200", stan="000002")

    async def scenario(client: Iso8583Client) -> None:
        assert (await client.request(refund)).fields[39] == "00"
        assert (await client.request(purchase)).fields[39] == "00"  # paid with the credit

    run(holder.bank, scenario)
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(110)


def test_what_the_bank_cannot_use_is_a_response_code(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    original = request(holder, yuan(300))
    cases = {
        "format_error": request(holder, 100, stan="000011", _52=b"\x00" * 8),
        "processing_code_not_supported": request(holder, 100, stan="000012", _3="200000"),
        "amount_invalid": request(holder, 0, stan="000013"),
    }
    swiped = request(holder, 100, stan="000014", _22="901")
    other_acquirer = follow_up(original, "0400", "000015").with_fields({32: "999"})

    async def scenario(client: Iso8583Client) -> None:
        for name, message in cases.items():
            assert (await client.request(message)).fields[39] == HOST_CODES[name], name
        assert (await client.request(swiped)).fields[39] == "30"
        assert (await client.request(other_acquirer)).fields[39] == "30"
        unknown = follow_up(request(holder, 100, stan="000099"), "0220", "000016")
        assert (await client.request(unknown)).fields[39] == "12"

    run(holder.bank, scenario)
    assert holder.bank.balance(holder.account_id).held_fen == 0


def test_garbage_frames_never_take_the_host_down(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))

    async def main() -> None:
        async with Iso8583Server(issuer_handler(holder.bank)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for junk in (b"\x00", b"0100" + b"\xff" * 20, b"hello world"):
                write_frame(writer, junk)
            write_frame(writer, encode(request(holder, yuan(1))))
            await writer.drain()
            frame = await read_frame(reader, timeout_s=TEST_TIMEOUT_S, max_bytes=4096)
            assert frame is not None and frame[:4] == b"0110"
            writer.close()

    asyncio.run(main())


def test_the_reference_names_acquirer_terminal_stan_and_time(world: BankWorld) -> None:
    holder = world.holder()
    one = request(holder, 100, terminal="T 1     ")
    other = request(holder, 100, terminal="T%201   ")
    assert authorization_reference(one) != authorization_reference(other)
    assert authorization_reference(one) == f"{ACQUIRER}/T%201%20%20%20%20%20/000001/1126040000"
    longest = request(holder, 100, terminal="~" * 8, _32="9" * 11)
    assert len(authorization_reference(longest)) <= 64
    reversal = follow_up(one, "0400", "000002")
    assert original_reference(reversal) == authorization_reference(one)
