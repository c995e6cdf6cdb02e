"""The acquirer host against a real ISO 8583 server on 127.0.0.1 playing the network switch
(a scripted handler), fed by real taps: the phone's applet and the terminal's kernel in
this process. The 0100 byte by byte, the 0200, declines, the timeout reversal and its
retries, the completion batch, and the merchant data's validation."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.acquiring import ContactlessKernel, KernelOutcome, NfcField, OutcomeKind, Transaction
from milletpay.acquiring import host as host_module
from milletpay.acquiring.host import (
    AcquirerError,
    AcquirerHost,
    CompletionStatus,
    ResultStatus,
)
from milletpay.acquiring.merchants import (
    MerchantDataError,
    MerchantDirectory,
    MessageStyle,
    load_merchants,
    merchants,
)
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.emv import tlv
from milletpay.emv.applet import UNIONPAY_AIDS, HceCard, HceLuk, PaymentApplet
from milletpay.network import iso8583
from milletpay.network.framing import read_frame, write_frame
from milletpay.network.iso8583 import Message
from milletpay.network.link import Iso8583Server

TEST_TIMEOUT_S = 10.0
RESPONSE_TIMEOUT_S = 0.3  # the host's wait in these tests: a silent switch costs little
LUK_KEY = bytes.fromhex("EAC7403DD3C26BC410F72CA1587ABC79")
TOKEN_PAN = "6299990000000016"
#: 26 November 2026, 02:30:15 UTC: 10:30:15 in China, day 330 of the year.
NOW = datetime.datetime(2026, 11, 26, 2, 30, 15, tzinfo=datetime.UTC)
NOW_NS = int(NOW.timestamp()) * NS_PER_S
TODAY = datetime.date(2026, 11, 26)
RESTAURANT, SUPERMARKET = "HZ581201", "BJ541101"  # dual and single message terminals
APPROVAL_CODE = "A1B2C3"
#: Tag 91, issuer authentication data: an ARPC (8 bytes) and its response code "00".
ARPC_DATA = bytes.fromhex("1122334455667788") + b"00"
DECLINED_FEN, SILENT_FEN = 5_100, 7_700  # amounts the scripted switch declines, ignores


@dataclass
class ScriptedSwitch:
    """The network switch as a script: approves with 00, an approval code and field 55
    holding tag 91; declines `DECLINED_FEN` with 51; never answers `SILENT_FEN`; answers
    0400 with 0410 and 0220 with 0230, except the first `silent_reversals` /
    `silent_advices` of them. Every request it receives is kept, in order."""

    silent_reversals: int = 0
    silent_advices: int = 0
    received: list[Message] = field(default_factory=list)

    def of_type(self, mti: str) -> list[Message]:
        return [m for m in self.received if m.mti == mti]

    async def __call__(self, request: Message) -> Message | None:
        self.received.append(request)
        if request.mti in ("0100", "0200"):
            amount_fen = int(request.text(4))
            if amount_fen == SILENT_FEN:
                return None
            if amount_fen == DECLINED_FEN:
                return iso8583.response_to(request, "51")
            icc = tlv.encode(tlv.Tlv("91", ARPC_DATA))
            return iso8583.response_to(request, "00", {38: APPROVAL_CODE, 55: icc})
        if request.mti == "0400":
            if self.silent_reversals:
                self.silent_reversals -= 1
                return None
            return iso8583.response_to(request, "00")
        if request.mti == "0220":
            if self.silent_advices:
                self.silent_advices -= 1
                return None
            return iso8583.response_to(request, "00")
        return iso8583.response_to(request, "12")


def phone(clock: ManualClock) -> PaymentApplet:
    luk = HceLuk(LUK_KEY, 1, "unionpay-cvn01", 1, 20, 10, clock.now_ns() + 3_600 * NS_PER_S)
    card = HceCard(TOKEN_PAN, "2911", 1, UNIONPAY_AIDS["debit"], "UnionPay Debit", 1, luk)
    return PaymentApplet([card], clock)


def tap(card: PaymentApplet, terminal_id: str, amount_fen: int, seed: int = 7) -> KernelOutcome:
    """A tap at `terminal_id`'s reader, with its configuration from the merchant data."""
    _, terminal = merchants().terminal(terminal_id)
    kernel = ContactlessKernel(terminal.config, random.Random(seed))
    with NfcField(card) as nfc:
        return kernel.tap(nfc, Transaction(amount_fen, TODAY))


Scenario = Callable[[AcquirerHost, PaymentApplet], Awaitable[None]]


def run(scenario: Scenario, switch: ScriptedSwitch, **host_options: Any) -> None:
    """Runs `scenario` with a host connected to `switch` on a free port of 127.0.0.1."""
    clock = ManualClock(NOW_NS)
    options = {"response_timeout_s": RESPONSE_TIMEOUT_S, "reversal_backoff_s": 0.01}

    async def main() -> None:
        async with Iso8583Server(switch) as server:
            host = AcquirerHost(
                "127.0.0.1", server.port, clock, merchants(), **options | host_options
            )
            async with host:
                await asyncio.wait_for(scenario(host, phone(clock)), TEST_TIMEOUT_S)

    asyncio.run(main())


# -- the 0100 ---------------------------------------------------------------------------


def test_the_0100_of_a_dual_message_merchant_byte_by_byte() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        outcome = tap(card, RESTAURANT, 4_000)
        assert outcome.kind is OutcomeKind.ONLINE_REQUEST and outcome.authorization
        result = await host.authorize(RESTAURANT, outcome, 4_000)
        icc = outcome.authorization.icc_data
        # Checked by hand against docs/iso8583.md and docs/acquiring.md.
        expected = b"".join(
            [
                b"0100",
                # fields 2 3 4 7 | 11 12 13 14 | 18 22 23 | 25 32 | 35 37 | 41 42 43 | 49 55
                bytes.fromhex("723C468128E08200"),
                b"16" + b"6299990000000016",  # 2: the token PAN, LLVAR
                b"000000",  # 3: purchase
                b"000000004000",  # 4: 40.00 CNY
                b"1126023015",  # 7: MMDDhhmmss UTC
                b"000001",  # 11: the terminal's first STAN
                b"103015",  # 12: 10:30:15 China time
                b"1126",  # 13: MMDD China time
                b"2911",  # 14: YYMM from 5F24
                b"5812",  # 18: restaurant
                b"071",  # 22: contactless chip, PIN capable (TTQ online PIN)
                b"001",  # 23: PSN 01
                b"00",  # 25: normal
                b"08" + b"49990000",  # 32: the acquirer, LLVAR
                b"24" + b"6299990000000016=2911201",  # 35: track 2 from 57
                b"633002000001",  # 37: year 6, day 330, hour 02, STAN
                b"HZ581201",  # 41
                b"999331058120001",  # 42
                b"West Lake Jade Garden    Hangzhou     CN",  # 43: 25 + 13 + 2
                b"156",  # 49: CNY
                f"{len(icc):03d}".encode() + icc,  # 55: the kernel's ICC data, LLLVAR
            ]
        )
        assert iso8583.encode(result.request) == expected
        assert switch.received == [result.request]  # what arrived is what was built

    run(scenario, switch)


def test_an_approval_gives_its_code_and_the_issuer_authentication_data() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 4_000), 4_000)
        assert result.status is ResultStatus.APPROVED and result.approved
        assert (result.response_code, result.approval_code) == ("00", APPROVAL_CODE)
        assert result.issuer_authentication_data == ARPC_DATA
        assert (result.stan, result.rrn, result.terminal_id) == (
            "000001",
            "633002000001",
            RESTAURANT,
        )
        assert result.response is not None and result.response.mti == "0110"
        assert result.reversal is None
        assert host.journal() == (result,)
        (pending,) = host.pending_completions()
        assert (pending.rrn, pending.authorized_fen, pending.status) == (
            "633002000001",
            4_000,
            CompletionStatus.PENDING,
        )

    run(scenario, switch)


def test_each_terminal_has_its_own_stan_sequence() -> None:
    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        first = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 1_000), 1_000)
        second = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 2_000), 2_000)
        other = await host.authorize("HZ581202", tap(card, "HZ581202", 3_000), 3_000)
        assert [first.stan, second.stan, other.stan] == ["000001", "000002", "000001"]

    run(scenario, ScriptedSwitch())


def test_a_single_message_merchant_sends_an_0200_and_needs_no_completion() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(SUPERMARKET, tap(card, SUPERMARKET, 8_800), 8_800)
        assert result.status is ResultStatus.APPROVED
        request = result.request
        assert request.mti == "0200" and result.response and result.response.mti == "0210"
        assert (request.text(18), request.text(41), request.text(42)) == (
            "5411",
            SUPERMARKET,
            "999100054110001",
        )
        assert request.text(43) == "Millet Fresh Supermarket Beijing      CN"
        assert request.text(4) == "000000008800" and request.text(22) == "071"
        assert host.pending_completions() == ()
        report = await host.upload_batch()
        assert report.advices_sent == 0 and switch.of_type("0220") == []

    run(scenario, switch)


def test_a_decline_is_passed_through_with_its_code() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        outcome = tap(card, RESTAURANT, DECLINED_FEN)
        result = await host.authorize(RESTAURANT, outcome, DECLINED_FEN)
        assert result.status is ResultStatus.DECLINED and not result.approved
        assert (result.response_code, result.approval_code) == ("51", None)
        assert result.issuer_authentication_data is None and result.reversal is None
        assert host.pending_completions() == () and switch.of_type("0400") == []

    run(scenario, switch)


# -- no answer: the reversal -------------------------------------------------------------


def test_a_timeout_sends_exactly_one_reversal_naming_the_original() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        outcome = tap(card, RESTAURANT, SILENT_FEN)
        result = await host.authorize(RESTAURANT, outcome, SILENT_FEN)
        assert result.status is ResultStatus.TIMED_OUT_REVERSED
        assert result.response is None and result.response_code is None
        assert [m.mti for m in switch.received] == ["0100", "0400"]
        (reversal,) = switch.of_type("0400")
        original = result.request
        # 90: MTI, STAN, field 7, acquirer (11, zero-filled), forwarder (none: zeros).
        assert reversal.text(90) == "0100" + "000001" + "1126023015" + "00049990000" + "0" * 11
        assert reversal.text(11) == "000002" and reversal.text(39) == "68"
        for number in (2, 3, 4, 12, 13, 32, 37, 41, 42, 49):
            assert reversal.fields[number] == original.fields[number], number
        assert 55 not in reversal.fields and 35 not in reversal.fields
        assert result.reversal is not None and result.reversal.request == reversal
        assert result.reversal.response is not None
        assert result.reversal.response.mti == "0410" and result.reversal.attempts == 1
        assert host.reversals() == (result.reversal,) and host.pending_reversals() == ()
        assert host.pending_completions() == ()
        await host.upload_batch()
        assert len(switch.of_type("0400")) == 1  # answered: never sent again

    run(scenario, switch)


def test_the_reversal_is_retried_when_its_first_attempt_times_out() -> None:
    switch = ScriptedSwitch(silent_reversals=1)

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, SILENT_FEN), SILENT_FEN)
        assert result.status is ResultStatus.TIMED_OUT_REVERSED
        assert [m.mti for m in switch.received] == ["0100", "0400", "0400"]
        first, second = switch.of_type("0400")
        assert first == second  # the same message, STAN included: a repeat
        assert result.reversal is not None and result.reversal.attempts == 2

    run(scenario, switch)


def test_a_reversal_never_answered_waits_for_the_batch() -> None:
    switch = ScriptedSwitch(silent_reversals=2)

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, SILENT_FEN), SILENT_FEN)
        assert result.status is ResultStatus.TIMED_OUT_REVERSAL_PENDING
        assert result.reversal is not None and not result.reversal.answered
        assert len(host.pending_reversals()) == 1 and len(switch.of_type("0400")) == 2
        report = await host.upload_batch()
        assert (report.reversals_answered, report.reversals_pending) == (1, 0)
        assert len(switch.of_type("0400")) == 3 and len(host.reversals()) == 1
        await host.upload_batch()
        assert len(switch.of_type("0400")) == 3

    run(scenario, switch, reversal_attempts_max=2)


# -- completion --------------------------------------------------------------------------


def test_the_batch_sends_one_0220_per_approval_with_the_final_amount() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        dinner = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 12_000), 12_000)
        lunch = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 8_000), 8_000)
        await host.authorize(SUPERMARKET, tap(card, SUPERMARKET, 2_000), 2_000)  # 0200
        await host.authorize(RESTAURANT, tap(card, RESTAURANT, DECLINED_FEN), DECLINED_FEN)
        completion = await host.complete(RESTAURANT, dinner.rrn, 11_500)
        assert completion.status is CompletionStatus.COMPLETED
        assert completion.response is not None and completion.response.mti == "0230"
        report = await host.upload_batch()
        assert (report.advices_sent, report.completed, report.completions_pending) == (1, 1, 0)
        dinner_advice, lunch_advice = switch.of_type("0220")
        assert dinner_advice.text(90)[:10] == "0100" + dinner.stan
        assert dinner_advice.text(90) == iso8583.original_data_elements(dinner.request)
        assert dinner_advice.text(4) == "000000012000"  # the authorized amount ...
        assert dinner_advice.text(95) == "000000011500" * 2 + "0" * 18  # ... and the final
        assert lunch_advice.text(90) == iso8583.original_data_elements(lunch.request)
        assert lunch_advice.text(4) == "000000008000" and 95 not in lunch_advice.fields
        for advice, authorization in ((dinner_advice, dinner), (lunch_advice, lunch)):
            assert (advice.text(38), advice.text(39)) == (APPROVAL_CODE, "00")
            assert advice.text(37) == authorization.rrn
            assert advice.text(11) != authorization.stan
        assert {c.rrn for c in host.completed()} == {dinner.rrn, lunch.rrn}
        again = await host.upload_batch()
        assert again.advices_sent == 0 and len(switch.of_type("0220")) == 2
        assert await host.complete(RESTAURANT, dinner.rrn, 11_500) == completion
        assert len(switch.of_type("0220")) == 2

    run(scenario, switch)


def test_an_unanswered_completion_is_resent_unchanged_by_the_next_batch() -> None:
    switch = ScriptedSwitch(silent_advices=1)

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 6_000), 6_000)
        first = await host.upload_batch()
        assert (first.advices_sent, first.completed, first.completions_pending) == (1, 0, 1)
        (pending,) = host.pending_completions()
        assert pending.final_fen == 6_000 and pending.attempts == 1
        second = await host.upload_batch()
        assert (second.completed, second.completions_pending) == (1, 0)
        sent, resent = switch.of_type("0220")
        assert sent == resent  # same STAN, same reference: the switch can tell a repeat
        assert sent.text(37) == result.rrn
        assert (await host.upload_batch()).advices_sent == 0
        assert len(switch.of_type("0220")) == 2

    run(scenario, switch)


def test_a_completion_amount_is_at_most_the_authorized_and_then_fixed() -> None:
    switch = ScriptedSwitch(silent_advices=1)

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 6_000), 6_000)
        for wrong in (0, 6_001):
            with pytest.raises(AcquirerError) as refused:
                await host.complete(RESTAURANT, result.rrn, wrong)
            assert refused.value.code == "completion_amount_invalid"
        pending = await host.complete(RESTAURANT, result.rrn, 5_000)  # not answered
        assert pending.status is CompletionStatus.PENDING
        with pytest.raises(AcquirerError) as fixed:
            await host.complete(RESTAURANT, result.rrn, 4_000)
        assert fixed.value.code == "completion_amount_fixed"
        with pytest.raises(AcquirerError) as unknown:
            await host.complete(RESTAURANT, "633002999999", 100)
        assert unknown.value.code == "completion_unknown"
        assert len(switch.of_type("0220")) == 1

    run(scenario, switch)


# -- the link ------------------------------------------------------------------------------


def test_a_switch_that_closed_the_link_gets_a_new_connection_and_no_reversal() -> None:
    switch = ScriptedSwitch()
    clock = ManualClock(NOW_NS)

    async def main() -> None:
        server = Iso8583Server(switch)
        await server.start()
        port = server.port
        host = AcquirerHost("127.0.0.1", port, clock, merchants())
        card = phone(clock)
        async with host:
            assert (await host.authorize(RESTAURANT, tap(card, RESTAURANT, 1_000), 1_000)).approved
            await server.close()  # the switch hangs up and comes back on the same port
            await asyncio.sleep(0.05)
            async with Iso8583Server(switch, port=port):
                result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 2_000), 2_000)
        assert result.approved and [m.mti for m in switch.received] == ["0100", "0100"]

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


def test_a_link_lost_after_sending_is_reversed_on_a_new_connection() -> None:
    """A switch that hangs up with the 0100 unanswered: the host cannot know whether the
    issuer saw it, so it reverses it, on a new connection."""
    received: list[Message] = []
    connections: list[int] = []
    clock = ManualClock(NOW_NS)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        first = len(connections) == 1
        try:
            while True:
                frame = await read_frame(
                    reader, timeout_s=TEST_TIMEOUT_S, max_bytes=iso8583.MESSAGE_BYTES_MAX
                )
                if frame is None:
                    return
                request = iso8583.decode(frame)
                received.append(request)
                if first:
                    return  # hang up, the request unanswered
                write_frame(writer, iso8583.encode(iso8583.response_to(request, "00")))
                await writer.drain()
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, AcquirerHost("127.0.0.1", port, clock, merchants()) as host:
            outcome = tap(phone(clock), RESTAURANT, 1_000)
            result = await host.authorize(RESTAURANT, outcome, 1_000)
        assert result.status is ResultStatus.TIMED_OUT_REVERSED
        assert [m.mti for m in received] == ["0100", "0400"] and len(connections) == 2
        assert received[1].text(90) == iso8583.original_data_elements(result.request)

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


def test_no_connection_means_nothing_sent_and_nothing_to_reverse() -> None:
    clock = ManualClock(NOW_NS)

    async def main() -> None:
        server = Iso8583Server(ScriptedSwitch())
        await server.start()
        port = server.port
        await server.close()  # nobody listens there any more
        async with AcquirerHost("127.0.0.1", port, clock, merchants()) as host:
            outcome = tap(phone(clock), RESTAURANT, 1_000)
            result = await host.authorize(RESTAURANT, outcome, 1_000)
        assert result.status is ResultStatus.SWITCH_UNAVAILABLE and result.reversal is None
        assert host.pending_reversals() == () and host.pending_completions() == ()

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


# -- what the host refuses to send ---------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal_id", "tapped_fen", "sent_fen", "code"),
    [
        ("XX000001", 1_000, 1_000, "terminal_unknown"),
        (RESTAURANT, 1_000, 1_001, "amount_mismatch"),
        (RESTAURANT, 1_000, 0, "amount_mismatch"),
        ("CD412101", 100_001, 100_001, "outcome_not_online"),  # over the taxi's limit
    ],
)
def test_a_request_that_cannot_be_sent_is_refused_and_nothing_leaves(
    terminal_id: str, tapped_fen: int, sent_fen: int, code: str
) -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        reader = "CD412101" if terminal_id == "CD412101" else RESTAURANT
        outcome = tap(card, reader, tapped_fen)
        with pytest.raises(AcquirerError) as refused:
            await host.authorize(terminal_id, outcome, sent_fen)
        assert refused.value.code == code
        assert switch.received == [] and host.journal() == ()

    run(scenario, switch)


def test_a_dual_merchant_is_refused_at_the_pending_completions_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host_module, "PENDING_COMPLETIONS_MAX", 2)
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        for amount_fen in (1_000, 2_000):
            assert (
                await host.authorize(RESTAURANT, tap(card, RESTAURANT, amount_fen), amount_fen)
            ).approved
        with pytest.raises(AcquirerError) as refused:
            await host.authorize(RESTAURANT, tap(card, RESTAURANT, 3_000), 3_000)
        assert refused.value.code == "completions_backlog"
        single = await host.authorize(SUPERMARKET, tap(card, SUPERMARKET, 3_000), 3_000)
        assert single.approved  # a single-message merchant leaves nothing to complete
        assert (await host.upload_batch()).completed == 2
        assert (await host.authorize(RESTAURANT, tap(card, RESTAURANT, 3_000), 3_000)).approved
        assert len(switch.of_type("0100")) == 3

    run(scenario, switch)


def test_the_0220_field_by_field() -> None:
    switch = ScriptedSwitch()

    async def scenario(host: AcquirerHost, card: PaymentApplet) -> None:
        result = await host.authorize(RESTAURANT, tap(card, RESTAURANT, 10_000), 10_000)
        await host.complete(RESTAURANT, result.rrn, 9_000)
        (advice,) = switch.of_type("0220")
        assert advice.fields == {
            2: TOKEN_PAN,
            3: "000000",
            4: "000000010000",
            7: "1126023015",
            11: "000002",
            12: "103015",
            13: "1126",
            14: "2911",
            18: "5812",
            22: "071",
            23: "001",
            25: "00",
            32: "49990000",
            37: "633002000001",
            38: APPROVAL_CODE,
            39: "00",
            41: RESTAURANT,
            42: "999331058120001",
            43: "West Lake Jade Garden    Hangzhou     CN",
            49: "156",
            90: "0100" + "000001" + "1126023015" + "00049990000" + "0" * 11,
            95: "000000009000" + "000000009000" + "000000000" + "000000000",
        }

    run(scenario, switch)


def test_field_22_says_whether_the_terminal_takes_a_pin() -> None:
    """071 where the reader's TTQ offers online PIN, 072 where it does not."""
    clock = ManualClock(NOW_NS)
    merchant, terminal = merchants().terminal(RESTAURANT)
    no_pin = dataclasses.replace(terminal.config, ttq=bytes.fromhex("A2004000"))
    merchant = dataclasses.replace(
        merchant, terminals=(dataclasses.replace(terminal, config=no_pin),)
    )
    outcome = ContactlessKernel(no_pin, random.Random(7)).tap(
        NfcField(phone(clock)), Transaction(1_000, TODAY)
    )
    request = host_module.request_message(
        outcome,
        merchant,
        RESTAURANT,
        institution_id="49990000",
        currency_numeric="156",
        amount_fen=1_000,
        stan="000001",
        now_ns=NOW_NS,
    )
    assert request.text(22) == "072"
    iso8583.validate(request)


@settings(max_examples=25, deadline=None)
@given(
    terminal_id=st.sampled_from(merchants().terminal_ids()),
    amount_fen=st.integers(1, 30_000),
    stan=st.integers(1, 999_999),
)
def test_every_terminal_builds_a_valid_request_that_survives_the_wire(
    terminal_id: str, amount_fen: int, stan: int
) -> None:
    clock = ManualClock(NOW_NS)
    merchant, terminal = merchants().terminal(terminal_id)
    outcome = tap(phone(clock), terminal_id, amount_fen)
    request = host_module.request_message(
        outcome,
        merchant,
        terminal_id,
        institution_id="49990000",
        currency_numeric="156",
        amount_fen=amount_fen,
        stan=f"{stan:06d}",
        now_ns=NOW_NS,
    )
    assert iso8583.decode(iso8583.encode(request)) == request
    assert request.mti == {MessageStyle.DUAL: "0100", MessageStyle.SINGLE: "0200"}[merchant.style]
    assert (request.text(4), request.text(41), request.text(42), request.text(18)) == (
        f"{amount_fen:012d}",
        terminal.terminal_id,
        merchant.merchant_id,
        merchant.mcc,
    )


# -- the merchant data ---------------------------------------------------------------------


def test_the_packaged_merchants_are_a_demo_of_both_styles_in_several_cities() -> None:
    directory = merchants()
    assert isinstance(directory, MerchantDirectory)
    assert directory.institution_id == "49990000" and directory.currency_numeric == "156"
    assert len(directory.merchants) >= 5
    assert {m.style for m in directory.merchants} == set(MessageStyle)
    assert len({m.city for m in directory.merchants}) >= 5
    assert {"5411", "5812", "5814", "5732", "4121"} <= {m.mcc for m in directory.merchants}
    for merchant in directory.merchants:
        assert len(merchant.merchant_id) == 15 and len(merchant.name_location) == 40
        for terminal in merchant.terminals:
            assert len(terminal.terminal_id) == 8
            assert terminal.config.floor_limit_minor == 0  # every tap goes online
    merchant, terminal = directory.terminal(SUPERMARKET)
    assert merchant.name == "Millet Fresh Supermarket"
    assert (terminal.config.cvm_limit_minor, terminal.config.contactless_limit_minor) == (
        100_000,
        500_000,
    )
    _, coffee = directory.terminal("SH581401")
    assert coffee.config.cvm_limit_minor == 30_000  # the default QuickPass no-CVM limit


GOOD = """
[acquirer]
institution_id = "49990000"
country = "CN"
country_numeric = "156"
currency_numeric = "156"

[terminal_defaults]
contactless_limit_fen = 500_000
cvm_limit_fen = 30_000
floor_limit_fen = 0

[[merchant]]
merchant_id = "999100054110001"
name = "Corner Shop"
city = "Beijing"
mcc = "5411"
style = "single"
terminals = [{ terminal_id = "BJ000001" }]
"""


def test_a_good_file_loads() -> None:
    (merchant,) = load_merchants(GOOD).merchants
    assert merchant.name_location == "Corner Shop".ljust(25) + "Beijing".ljust(13) + "CN"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('mcc = "5411"', 'mcc = "541"', "merchant 999100054110001.mcc must be 4 digits"),
        ('style = "single"', 'style = "triple"', "merchant 999100054110001.style"),
        (
            'name = "Corner Shop"',
            'name = "The Very Long Corner Shop Name"',
            "merchant 999100054110001.name must be 1 to 25",
        ),
        ('city = "Beijing"', 'city = "Běijīng"', "merchant 999100054110001.city"),
        ('merchant_id = "999100054110001"', 'merchant_id = "99910005411"', "merchant[0]"),
        (
            'terminal_id = "BJ000001"',
            'terminal_id = "BJ1"',
            "merchant 999100054110001.terminals[0]",
        ),
        (
            '{ terminal_id = "BJ000001" }',
            '{ terminal_id = "BJ000001", cvm_limit_fen = 600_000 }',
            "terminal BJ000001: limits must keep",
        ),
        (
            '{ terminal_id = "BJ000001" }',
            '{ terminal_id = "BJ000001", pin_pad = true }',
            "merchant 999100054110001.terminals[0] has unknown fields: pin_pad",
        ),
        (
            '{ terminal_id = "BJ000001" }',
            '{ terminal_id = "BJ000001" }, { terminal_id = "BJ000001" }',
            "terminal BJ000001 appears twice",
        ),
        (
            'institution_id = "49990000"',
            'institution_id = "499900001234"',
            "acquirer.institution_id",
        ),
        ('currency_numeric = "156"', 'currency_numeric = "CNY"', "acquirer.currency_numeric"),
        ("floor_limit_fen = 0", "floor_limit_fen = -1", "terminal BJ000001.floor_limit_fen"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_entry_and_field(
    old: str, new: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(MerchantDataError) as refused:
        load_merchants(GOOD.replace(old, new))
    assert message in str(refused.value)


def test_a_merchant_twice_is_refused() -> None:
    second = GOOD[GOOD.index("[[merchant]]") :].replace("BJ000001", "BJ000002")
    with pytest.raises(MerchantDataError, match="merchant 999100054110001 appears twice"):
        load_merchants(GOOD + second)


def test_a_file_that_is_not_toml_is_refused() -> None:
    with pytest.raises(MerchantDataError, match="not TOML"):
        load_merchants("[acquirer")
