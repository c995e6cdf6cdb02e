"""The card network switch end to end, on real sockets of 127.0.0.1: an acquirer's
client, the switch's server, and issuer hosts for two banks with their own books. A
phone's tap (a real applet, a real kernel, a LUK from the token service) is detokenized,
its cryptogram checked, authorized by the issuer with a hold, and answered with the
token and an ARPC; the switch's refusals never reach the issuer; duplicates, stand-in,
completions, reversals and garbage. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from milletpay.banks.data import banks
from milletpay.cards import Party, TokenDomain
from milletpay.cards.detokenize import DetokenizeCode
from milletpay.cards.luk import LUK_PROFILE, LukCode
from milletpay.emv import crypto, tlv
from milletpay.ledger.committer import GroupCommitter
from milletpay.network.books import ClearingStatus, MessageKey, NetworkBooks
from milletpay.network.framing import read_frame, write_frame
from milletpay.network.iso8583 import Message, encode, original_data_elements
from milletpay.network.storage import network_database
from milletpay.network.switch import (
    DETOKENIZE_CODES,
    LUK_CODES,
    STAND_IN_APPROVAL_PREFIX,
    route,
    token_domain,
)
from milletpay.store.engine import EngineTransactions

from .conftest import ACQUIRER, Acquirer, NetworkWorld, Running, running, tap, yuan

TEST_TIMEOUT_S = 60.0


def run(world: NetworkWorld, scenario: Callable[[Running], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running(world) as net:
            await asyncio.wait_for(scenario(net), TEST_TIMEOUT_S)

    asyncio.run(main())
    world.verify_books()


def follow_up(original: Message, mti: str, stan: str, amount_fen: int | None = None) -> Message:
    fields = dict(original.fields) | {
        11: stan,
        7: "1126040500",
        90: original_data_elements(original),
    }
    fields.pop(55, None)
    if amount_fen is not None:
        fields[4] = f"{amount_fen:012d}"
    if mti == "0220":
        fields[39] = "00"
    return Message(mti, fields)


def test_a_token_tap_is_approved_with_a_hold_the_token_back_and_an_arpc(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("ICBC")
    phone = world.phone(card)
    acquirer = Acquirer()
    authorization = tap(phone, yuan(40))
    request = acquirer.tap_request(authorization, yuan(40))

    async def scenario(net: Running) -> None:
        answer = await net.acquirer.request(request)
        assert (answer.mti, answer.fields[39]) == ("0110", "00")
        assert answer.text(2) == phone.token.number != card.pan
        assert card.pan not in repr(answer.fields) and len(answer.text(38)) == 6
        (forwarded,) = net.seen["ICBC"]
        assert (forwarded.text(2), forwarded.text(63)) == (card.pan, phone.token.number)
        assert forwarded.text(14) == card.expiry_yymm
        icc = tlv.primitives(tlv.decode(authorization.icc_data))
        issuer_data = tlv.primitives(tlv.decode(answer.binary(55)))["91"]
        arpc, arc = issuer_data[:8], issuer_data[8:]
        assert arc == b"00"
        assert crypto.verify_arpc(LUK_PROFILE, phone.grant.key, icc, icc["9F26"], arc, arpc)

    run(world, scenario)
    assert bank.balance(account_id).held_fen == yuan(40)
    (record,) = world.books.clearing_records()
    assert (record.token_number, record.bank_code, record.amount_fen) == (
        phone.token.number,
        "ICBC",
        yuan(40),
    )
    assert record.pan_masked == card.pan[:6] + "*" * (len(card.pan) - 10) + card.pan[-4:]
    assert (record.status, record.stand_in) == (ClearingStatus.AUTHORIZED, False)


def test_a_tampered_cryptogram_declines_and_the_issuer_never_sees_it(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("CCB")
    phone = world.phone(card)
    authorization = tap(phone, yuan(40))
    data = bytearray(authorization.icc_data)
    arqc_at = data.index(bytes.fromhex("9F2608")) + 3
    data[arqc_at] ^= 0x01
    request = Acquirer().tap_request(authorization, yuan(40), _55=bytes(data))

    async def scenario(net: Running) -> None:
        answer = await net.acquirer.request(request)
        assert answer.fields[39] == LUK_CODES[LukCode.ARQC_INVALID] == "05"
        assert 55 not in answer.fields and net.seen["CCB"] == []

    run(world, scenario)
    assert bank.balance(account_id).held_fen == 0
    assert world.books.clearing_records() == []


def test_a_token_in_the_wrong_domain_declines(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    in_app = world.token(card, TokenDomain.IN_APP)
    phone = world.phone(card)
    authorization = tap(phone, yuan(10))
    acquirer = Acquirer()
    tapped_in_app_token = acquirer.tap_request(authorization, yuan(10), _2=in_app.number)
    contactless_in_app = acquirer.tap_request(authorization, yuan(10), _22="812")
    mismatch = DETOKENIZE_CODES[DetokenizeCode.DOMAIN_MISMATCH]

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(tapped_in_app_token)).fields[39] == mismatch
        assert (await net.acquirer.request(contactless_in_app)).fields[39] == mismatch
        keyed = acquirer.tap_request(authorization, yuan(10), _22="012")
        assert (await net.acquirer.request(keyed)).fields[39] == mismatch
        assert net.seen["ICBC"] == []

    run(world, scenario)


def test_a_suspended_token_declines(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    phone = world.phone(card)
    world.tsp.suspend(phone.token.id, Party.CARDHOLDER)
    request = Acquirer().tap_request(tap(phone, yuan(10)), yuan(10))

    async def scenario(net: Running) -> None:
        answer = await net.acquirer.request(request)
        assert answer.fields[39] == DETOKENIZE_CODES[DetokenizeCode.TOKEN_NOT_ACTIVE] == "62"
        assert net.seen["ICBC"] == []

    run(world, scenario)


def test_exhausted_keys_decline_with_54_so_the_wallet_replenishes(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    phone = world.phone(card)
    acquirer = Acquirer()
    taps = [tap(phone, yuan(1)) for _ in range(phone.grant.uses_max)]
    cloned = tap(phone.clone(), yuan(1))  # the same LUK: the network counts its uses

    async def scenario(net: Running) -> None:
        for authorization in taps:
            answer = await net.acquirer.request(acquirer.tap_request(authorization, yuan(1)))
            assert answer.fields[39] == "00"
        last = await net.acquirer.request(acquirer.tap_request(cloned, yuan(1)))
        assert last.fields[39] == LUK_CODES[LukCode.LUK_EXHAUSTED] == "54"

    run(world, scenario)


def test_insufficient_funds_at_the_issuer_is_relayed(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("CCB", deposit_fen=yuan(5))
    phone = world.phone(card)
    request = Acquirer().tap_request(tap(phone, yuan(40)), yuan(40))

    async def scenario(net: Running) -> None:
        answer = await net.acquirer.request(request)
        assert answer.fields[39] == "51" and 38 not in answer.fields
        issuer_data = tlv.primitives(tlv.decode(answer.binary(55)))["91"]
        assert issuer_data[8:] == b"51"  # the card learns the decline under the ARPC

    run(world, scenario)
    assert bank.balance(account_id).held_fen == 0
    assert world.books.clearing_records() == []


def test_the_same_stan_twice_is_a_duplicate_and_holds_once(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("ICBC")
    request = Acquirer().request(card.pan, yuan(30))

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(request)).fields[39] == "00"
        assert (await net.acquirer.request(request)).fields[39] == "94"
        assert len(net.seen["ICBC"]) == 1

    run(world, scenario)
    assert bank.balance(account_id).held_fen == yuan(30)
    assert len(world.books.clearing_records()) == 1


def test_an_issuer_that_is_down_is_stood_in_for_and_told_once_back(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("CCB")
    acquirer = Acquirer()
    small = acquirer.request(card.pan, yuan(40))
    large = acquirer.request(card.pan, yuan(60))  # above the per-transaction limit
    over_the_day = acquirer.request(card.pan, yuan(50))  # 40 + 50 above the daily 80

    async def scenario(net: Running) -> None:
        port = await net.stop_issuer("CCB")
        answer = await net.acquirer.request(small)
        assert answer.fields[39] == "00"
        assert answer.text(38).startswith(STAND_IN_APPROVAL_PREFIX)
        assert (await net.acquirer.request(large)).fields[39] == "91"
        assert (await net.acquirer.request(over_the_day)).fields[39] == "91"
        still_down = await net.switch.send_stand_in_advices()
        assert (still_down.delivered, still_down.pending) == (0, 3)
        await net.start_issuer(world, "CCB", port)
        back = await net.switch.send_stand_in_advices()
        assert (back.delivered, back.pending) == (3, 0)
        assert [m.mti for m in net.seen["CCB"]] == ["0120", "0420", "0420"]
        assert (await net.switch.send_stand_in_advices()).delivered == 0

    run(world, scenario)
    assert bank.balance(account_id).held_fen == yuan(40)  # the advice's hold, once
    (record,) = world.books.clearing_records()
    assert record.stand_in and record.amount_fen == yuan(40)


def test_a_reversal_voids_the_hold(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("ICBC")
    phone = world.phone(card)
    acquirer = Acquirer()
    original = acquirer.tap_request(tap(phone, yuan(40)), yuan(40))

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(original)).fields[39] == "00"
        reversal = follow_up(original, "0400", acquirer.next_stan())
        answer = await net.acquirer.request(reversal)
        assert (answer.mti, answer.fields[39]) == ("0410", "00")
        assert answer.text(2) == phone.token.number
        forwarded = net.seen["ICBC"][-1]
        assert (forwarded.mti, forwarded.text(2), forwarded.text(63)) == (
            "0400",
            card.pan,
            phone.token.number,
        )
        again = follow_up(original, "0420", acquirer.next_stan())
        assert (await net.acquirer.request(again)).fields[39] == "00"

    run(world, scenario)
    balance = bank.balance(account_id)
    assert (balance.held_fen, balance.available_fen) == (0, yuan(1_000))
    (record,) = world.books.clearing_records()
    assert record.status is ClearingStatus.REVERSED


def test_a_completion_posts_the_hold(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("CCB")
    acquirer = Acquirer()
    original = acquirer.request(card.pan, yuan(40))

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(original)).fields[39] == "00"
        above = follow_up(original, "0220", acquirer.next_stan(), yuan(41))
        assert (await net.acquirer.request(above)).fields[39] == "13"
        completion = follow_up(original, "0220", acquirer.next_stan(), yuan(35))
        answer = await net.acquirer.request(completion)
        assert (answer.mti, answer.fields[39]) == ("0230", "00")

    run(world, scenario)
    balance = bank.balance(account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(965), 0)
    (record,) = world.books.clearing_records()
    assert (record.status, record.completed_fen) == (ClearingStatus.COMPLETED, yuan(35))


def test_a_completion_posts_field_95s_actual_amount_not_field_4(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("CCB")
    acquirer = Acquirer()
    original = acquirer.request(card.pan, yuan(40))

    def replaced(actual_fen: int) -> Message:
        """A POS's 0220: field 4 the authorized amount, the final one in field 95."""
        advice = follow_up(original, "0220", acquirer.next_stan())
        return advice.with_fields({95: f"{actual_fen:012d}" * 2 + "0" * 18})

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(original)).fields[39] == "00"
        for wrong in (0, yuan(41)):  # nothing, or more than authorized
            assert (await net.acquirer.request(replaced(wrong))).fields[39] == "13"
        answer = await net.acquirer.request(replaced(yuan(35)))
        assert (answer.mti, answer.fields[39]) == ("0230", "00")

    run(world, scenario)
    balance = bank.balance(account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(965), 0)
    (record,) = world.books.clearing_records()
    assert (record.status, record.completed_fen) == (ClearingStatus.COMPLETED, yuan(35))


def test_a_completion_while_the_issuer_is_down_is_delivered_later(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("ICBC")
    acquirer = Acquirer()
    original = acquirer.request(card.pan, yuan(40))

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(original)).fields[39] == "00"
        port = await net.stop_issuer("ICBC")
        completion = follow_up(original, "0220", acquirer.next_stan(), yuan(40))
        assert (await net.acquirer.request(completion)).fields[39] == "00"
        await net.start_issuer(world, "ICBC", port)
        assert (await net.switch.send_stand_in_advices()).delivered == 1

    run(world, scenario)
    balance = bank.balance(account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(960), 0)


def test_garbage_never_crashes_the_switch(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    acquirer = Acquirer()

    async def scenario(net: Running) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", net.switch_port)
        for junk in (b"\x00", b"0100" + b"\xff" * 40, b"\x30" * 700):
            write_frame(writer, junk)
        write_frame(writer, encode(acquirer.request(card.pan, yuan(1))))
        await writer.drain()
        frame = await read_frame(reader, timeout_s=10, max_bytes=4096)
        assert frame is not None and frame[:4] == b"0110"
        writer.close()
        nobody = acquirer.request("6011000000000004", yuan(1))
        assert (await net.acquirer.request(nobody)).fields[39] == "14"
        unknown_token = acquirer.request("6288000000000003", yuan(1))
        assert (await net.acquirer.request(unknown_token)).fields[39] == "14"
        advice = acquirer.request(card.pan, yuan(1), mti="0120", _39="00")
        assert (await net.acquirer.request(advice)).fields[39] == "12"

    run(world, scenario)


def test_the_clearing_records_match_the_approvals(world: NetworkWorld) -> None:
    _, icbc_card, _ = world.card("ICBC")
    _, ccb_card, _ = world.card("CCB", deposit_fen=yuan(10))
    acquirer = Acquirer()
    requests = [
        acquirer.request(icbc_card.pan, yuan(12)),
        acquirer.request(ccb_card.pan, yuan(20)),  # 51
        acquirer.request(icbc_card.pan, yuan(7), mti="0200"),
        acquirer.request(ccb_card.pan, yuan(3)),
    ]

    async def scenario(net: Running) -> None:
        answers = await asyncio.gather(*(net.acquirer.request(r) for r in requests))
        codes = [a.fields[39] for a in answers]
        assert codes == ["00", "51", "00", "00"]
        records = {r.stan: r for r in world.books.clearing_records()}
        approved = [(r, a) for r, a in zip(requests, answers, strict=True) if a.fields[39] == "00"]
        assert sorted(records) == sorted(r.text(11) for r, _ in approved)
        for request, answer in approved:
            record = records[request.text(11)]
            assert record.approval_code == answer.text(38)
            assert record.amount_fen == int(request.text(4))
            assert record.rrn == request.text(37) and record.mti == request.mti
        assert records[requests[2].text(11)].status is ClearingStatus.COMPLETED

    run(world, scenario)


def test_routing_and_domains_are_tables() -> None:
    specs = banks()
    icbc = next(s for s in specs if s.code == "ICBC")
    assert route(icbc.iin_ranges[0].first + "0000000000", specs) == route(
        icbc.iin_ranges[0].first + "1", specs
    )
    found = route(icbc.token_iin_range.first + "0000000000", specs)
    assert found is not None and (found.bank_code, found.token) == ("ICBC", True)
    assert route("4111111111111111", specs) is None
    tap_message = Acquirer().request("6288000000000003", 1)
    assert token_domain(tap_message) is TokenDomain.CONTACTLESS
    in_app = tap_message.with_fields({22: "812"})
    assert token_domain(in_app) is TokenDomain.IN_APP
    assert token_domain(in_app.with_fields({62: "ecommerce"})) is TokenDomain.ECOMMERCE
    assert token_domain(tap_message.with_fields({62: "in_app"})) is None
    assert token_domain(tap_message.with_fields({22: "901"})) is None


def test_no_stand_in_for_a_token_whose_cryptogram_failed(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    phone = world.phone(card)
    authorization = tap(phone, yuan(10))
    data = bytearray(authorization.icc_data)
    data[data.index(bytes.fromhex("9F2608")) + 3] ^= 0x80
    forged = Acquirer().tap_request(authorization, yuan(10), _55=bytes(data))

    async def scenario(net: Running) -> None:
        await net.stop_issuer("ICBC")
        assert (await net.acquirer.request(forged)).fields[39] == "05"
        assert (await net.switch.send_stand_in_advices()).pending == 0

    run(world, scenario)
    assert world.books.clearing_records() == []


def test_a_token_stood_in_for_carries_the_arpc_and_a_purchase_is_posted_later(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("CCB")
    phone = world.phone(card)
    authorization = tap(phone, yuan(30))
    purchase = Acquirer().tap_request(authorization, yuan(30), mti="0200")

    async def scenario(net: Running) -> None:
        port = await net.stop_issuer("CCB")
        answer = await net.acquirer.request(purchase)
        assert (answer.mti, answer.fields[39]) == ("0210", "00")
        assert answer.text(2) == phone.token.number
        icc = tlv.primitives(tlv.decode(authorization.icc_data))
        issuer_data = tlv.primitives(tlv.decode(answer.binary(55)))["91"]
        assert crypto.verify_arpc(
            LUK_PROFILE, phone.grant.key, icc, icc["9F26"], b"00", issuer_data[:8]
        )
        await net.start_issuer(world, "CCB", port)
        assert (await net.switch.send_stand_in_advices()).delivered == 2
        assert [m.mti for m in net.seen["CCB"]] == ["0120", "0220"]
        assert net.seen["CCB"][0].text(63) == phone.token.number

    run(world, scenario)
    balance = bank.balance(account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(970), 0)
    (record,) = world.books.clearing_records()
    assert (record.stand_in, record.status) == (True, ClearingStatus.COMPLETED)


def test_a_reversal_that_overtakes_its_authorization_makes_the_issuer_decline_it(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("ICBC")
    acquirer = Acquirer()
    original = acquirer.request(card.pan, yuan(20))

    async def scenario(net: Running) -> None:
        reversal = follow_up(original, "0400", acquirer.next_stan())
        assert (await net.acquirer.request(reversal)).fields[39] == "00"
        assert (await net.acquirer.request(original)).fields[39] == "05"

    run(world, scenario)
    assert bank.balance(account_id).held_fen == 0
    assert world.books.clearing_records() == []


def test_the_network_keeps_its_own_database(world: NetworkWorld, database_url: str) -> None:
    where = network_database(database_url)
    if world.network_engine.dialect.name == "sqlite":
        assert where.schema is None and where.url.endswith("-network.db")
    else:
        assert (where.schema, where.url) == ("network", database_url)
    tables = set(sa.inspect(world.network_engine).get_table_names())
    assert tables == {
        "network_messages_seen",
        "clearing_records",
        "stand_in_advices",
        "network_alembic_version",
    }
    assert "clearing_records" not in sa.inspect(world.engine).get_table_names()


def test_seen_keys_are_forgotten_in_bounded_batches(world: NetworkWorld) -> None:
    keys = [MessageKey(ACQUIRER, "T1      ", f"{n:06d}", "1126040000") for n in range(1, 6)]
    assert all(world.books.claim(key, "0100") for key in keys)
    assert not world.books.claim(keys[0], "0100")
    world.clock.advance(seconds=1)
    later = world.clock.now_ns()
    assert world.books.forget_seen(later, limit=3) == 3
    assert world.books.forget_seen(later, limit=3) == 2
    assert world.books.claim(keys[0], "0100")


def test_a_token_payment_with_broken_chip_data_is_a_format_error(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    phone = world.phone(card)
    authorization = tap(phone, yuan(10))
    icc = tlv.primitives(tlv.decode(authorization.icc_data))
    no_atc = tlv.encode([tlv.Tlv(tag, value) for tag, value in icc.items() if tag != "9F36"])
    no_arqc = tlv.encode([tlv.Tlv(tag, value) for tag, value in icc.items() if tag != "9F26"])
    acquirer = Acquirer()
    cases = {
        b"\x9f\x26\x08\x01": "30",  # cut short: not BER-TLV
        no_atc: "30",
        no_arqc: "30",
    }

    async def scenario(net: Running) -> None:
        for data, code in cases.items():
            message = acquirer.tap_request(authorization, yuan(10), _55=data)
            assert (await net.acquirer.request(message)).fields[39] == code
        missing = acquirer.tap_request(authorization, yuan(10)).with_fields({55: None})
        assert (await net.acquirer.request(missing)).fields[39] == "05"
        assert net.seen["ICBC"] == []
        # The genuine cryptogram was never spent: it still pays.
        genuine = acquirer.tap_request(authorization, yuan(10))
        assert (await net.acquirer.request(genuine)).fields[39] == "00"

    run(world, scenario)


def test_a_completion_without_field_90_is_a_format_error(world: NetworkWorld) -> None:
    _, card, _ = world.card("ICBC")
    acquirer = Acquirer()
    original = acquirer.request(card.pan, yuan(10))

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(original)).fields[39] == "00"
        completion = follow_up(original, "0220", acquirer.next_stan()).with_fields({90: None})
        assert (await net.acquirer.request(completion)).fields[39] == "30"
        unknown = follow_up(acquirer.request(card.pan, 1), "0220", acquirer.next_stan())
        assert (await net.acquirer.request(unknown)).fields[39] == "12"

    run(world, scenario)
    (record,) = world.books.clearing_records()
    assert record.status is ClearingStatus.AUTHORIZED


def test_a_link_the_issuer_closed_is_opened_again(world: NetworkWorld) -> None:
    bank, card, account_id = world.card("ICBC")
    acquirer = Acquirer()

    async def scenario(net: Running) -> None:
        assert (await net.acquirer.request(acquirer.request(card.pan, yuan(1)))).fields[39] == "00"
        port = await net.stop_issuer("ICBC")  # the switch's link to it is now closed
        await net.start_issuer(world, "ICBC", port)
        answer = await net.acquirer.request(acquirer.request(card.pan, yuan(2)))
        assert answer.fields[39] == "00"
        assert not answer.text(38).startswith(STAND_IN_APPROVAL_PREFIX)  # the issuer's own

    run(world, scenario)
    assert bank.balance(account_id).held_fen == yuan(3)


def test_a_refund_to_a_token_carries_no_cryptogram_and_is_never_stood_in_for(
    world: NetworkWorld,
) -> None:
    bank, card, account_id = world.card("CCB")
    phone = world.phone(card)
    acquirer = Acquirer()
    device = phone.token.device_id
    refund = acquirer.request(
        phone.token.number, yuan(30), mti="0200", _3="200000", _22="812", _61=device
    )
    unanswered = acquirer.request(
        phone.token.number, yuan(20), mti="0200", _3="200000", _22="812", _61=device
    )
    stolen = acquirer.request(
        phone.token.number, yuan(20), mti="0200", _3="200000", _22="812", _61="not-the-phone"
    )

    async def scenario(net: Running) -> None:
        answer = await net.acquirer.request(refund)
        assert (answer.fields[39], 55 in answer.fields) == ("00", False)
        assert (await net.acquirer.request(stolen)).fields[39] == "57"  # another device
        await net.stop_issuer("CCB")
        assert (await net.acquirer.request(unanswered)).fields[39] == "91"  # no stand-in

    run(world, scenario)
    assert bank.balance(account_id).posted_fen == yuan(1_030)
    (record,) = world.books.clearing_records()  # a credit to the card, for settlement
    assert (record.processing_code, record.amount_fen, str(record.status)) == (
        "200000",
        yuan(30),
        "completed",
    )


def test_group_committed_claims_let_one_of_a_key_through(world: NetworkWorld) -> None:
    """A switch under load writes its claims and clearing records through a group
    committer: claims of one key in one shared transaction still let exactly one pass."""
    committer = GroupCommitter(EngineTransactions(world.network_engine))
    books = NetworkBooks(world.network_engine, world.keyring, world.clock, committer=committer)
    same = MessageKey(ACQUIRER, "T9      ", "000001", "1126040000")
    distinct = [MessageKey(ACQUIRER, "T9      ", f"{n:06d}", "1126040000") for n in range(2, 12)]
    try:
        with ThreadPoolExecutor(8) as pool:
            claims = list(pool.map(lambda _: books.claim(same, "0200"), range(8)))
            others = list(pool.map(lambda key: books.claim(key, "0200"), distinct))
    finally:
        committer.close()
    assert sorted(claims) == [False] * 7 + [True]
    assert all(others)
    assert not world.books.claim(distinct[0], "0200")  # stored: seen by books without one
