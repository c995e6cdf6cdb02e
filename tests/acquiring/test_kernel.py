"""The POS contactless kernel against the phone's real applet, both in this process: the
online request whose ARQC verifies under the LUK, the reader limits, the consumer device
CVM, a torn field, application selection, and cards that answer anything at all."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.acquiring import (
    CVM_RESULTS,
    ContactlessCard,
    ContactlessKernel,
    Cvm,
    KernelOutcome,
    NfcField,
    OutcomeKind,
    TerminalConfig,
    TerminalConfigError,
    Transaction,
    TransactionInvalid,
)
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.emv import apdu, crypto, tlv
from milletpay.emv.applet import UNIONPAY_AIDS, HceCard, HceLuk, PaymentApplet
from milletpay.emv.profiles import profile
from milletpay.emv.tlv import Tlv

#: SELECT PPSE as openemv/emv-utils writes it (tests/emv_ep_select_application_test.c).
SELECT_PPSE = "00A404000E325041592E5359532E444446303100"
DEBIT, CREDIT = UNIONPAY_AIDS["debit"], UNIONPAY_AIDS["credit"]
LUK_KEY = bytes.fromhex("EAC7403DD3C26BC410F72CA1587ABC79")
TOKEN_PAN = "6299990000000016"
TODAY = datetime.date(2026, 11, 26)
CONFIG = TerminalConfig(
    contactless_limit_minor=500_000, cvm_limit_minor=100_000, floor_limit_minor=0
)
SMALL, LARGE, TOO_LARGE = 4_000, 150_000, 500_001  # fen


def luk(clock: ManualClock, uses: int = 10) -> HceLuk:
    return HceLuk(LUK_KEY, 1, "unionpay-cvn01", 1, 20, uses, clock.now_ns() + 3_600 * NS_PER_S)


def phone(clock: ManualClock, *cards: tuple[bytes, int], uses: int = 10) -> PaymentApplet:
    """An applet with one card per (AID, priority); the first is TOKEN_PAN."""
    held = [
        HceCard(
            f"{int(TOKEN_PAN) + 8 * n}", "2911", 1, aid, f"Card {n}", priority, luk(clock, uses)
        )
        for n, (aid, priority) in enumerate(cards or ((DEBIT, 1),))
    ]
    return PaymentApplet(held, clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def tap(
    card: ContactlessCard,
    amount_fen: int = SMALL,
    config: TerminalConfig = CONFIG,
    *,
    seed: int = 7,
    tear_after: int | None = None,
) -> KernelOutcome:
    kernel = ContactlessKernel(config, random.Random(seed))
    with NfcField(card, tear_after_exchanges=tear_after) as field:
        return kernel.tap(field, Transaction(amount_fen, TODAY))


def field_55(outcome: KernelOutcome) -> dict[str, bytes]:
    assert outcome.authorization is not None
    return tlv.primitives(tlv.decode(outcome.authorization.icc_data))


def arqc_verifies(outcome: KernelOutcome) -> bool:
    icc = field_55(outcome)
    return crypto.verify_arqc(profile("unionpay-cvn01"), LUK_KEY, icc, icc["9F26"])


# -- a tap ------------------------------------------------------------------------------


def test_a_small_tap_is_an_online_request_whose_arqc_verifies(clock: ManualClock) -> None:
    outcome = tap(phone(clock))
    assert (outcome.kind, outcome.reason, outcome.cvm) == (
        OutcomeKind.ONLINE_REQUEST,
        "arqc",
        Cvm.NO_CVM,
    )
    assert arqc_verifies(outcome)
    auth = outcome.authorization
    assert auth is not None
    assert (auth.pan, auth.expiry_yymmdd, auth.psn, auth.aid) == (TOKEN_PAN, "291130", 1, DEBIT)
    assert auth.track2 == bytes.fromhex("6299990000000016D2911201")
    icc = field_55(outcome)
    assert list(icc) == [
        "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82",
        "9F1A", "9F03", "9F33", "9F34", "9F35", "84", "9F09", "9F66", "9F6C", "5F34",
    ]  # fmt: skip
    assert icc["9F02"] == bytes.fromhex("000000004000") and icc["9A"] == bytes.fromhex("261126")
    assert icc["9F34"] == CVM_RESULTS[Cvm.NO_CVM] == bytes.fromhex("1F0002")
    assert icc["9F66"] == bytes.fromhex("A6804000")  # online cryptogram required, no CVM
    assert icc["95"] == bytes.fromhex("8000008000")  # no ODA; over the floor limit of 0
    assert icc["84"] == DEBIT and icc["9F36"] == b"\x00\x01"


def test_the_transcript_holds_every_apdu(clock: ManualClock) -> None:
    outcome = tap(phone(clock))
    commands = [exchange.command_hex for exchange in outcome.transcript]
    assert commands[0] == SELECT_PPSE
    assert commands[1] == "00A4040008A00000033301010100"
    assert commands[2].startswith("80A80000238321A6804000000000004000")
    assert commands[3:] == ["00B2010C00", "00B2020C00"]
    assert all(exchange.response_hex.endswith("9000") for exchange in outcome.transcript)
    text = outcome.transcript_text()
    assert text.splitlines()[0] == f"C-APDU {SELECT_PPSE}"
    assert len(text.splitlines()) == 2 * len(outcome.transcript)


def test_the_unpredictable_number_comes_from_the_seeded_source(clock: ManualClock) -> None:
    first = field_55(tap(phone(clock), seed=1))["9F37"]
    again = field_55(tap(phone(clock), seed=1))["9F37"]
    other = field_55(tap(phone(clock), seed=2))["9F37"]
    assert first == again == random.Random(1).randbytes(4) and other != first


def test_each_tap_moves_the_atc_on(clock: ManualClock) -> None:
    card = phone(clock)
    atcs = [field_55(tap(card))["9F36"] for _ in range(3)]
    assert atcs == [b"\x00\x01", b"\x00\x02", b"\x00\x03"]


# -- reader limits and the CVM ----------------------------------------------------------


def test_above_the_cvm_limit_without_a_fingerprint_is_see_phone(clock: ManualClock) -> None:
    card = phone(clock)
    outcome = tap(card, LARGE)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.TRY_AGAIN_SEE_PHONE, "cdcvm_needed")
    assert outcome.transcript[-1].response_hex == "6986"
    assert outcome.authorization is None
    assert card.key_status(TOKEN_PAN).atc_next == 1  # no cryptogram was made


def test_after_the_fingerprint_the_tap_goes_online_with_cdcvm(clock: ManualClock) -> None:
    card = phone(clock)
    assert tap(card, LARGE).kind is OutcomeKind.TRY_AGAIN_SEE_PHONE
    clock.advance(seconds=5)
    card.confirm_cdcvm(clock.now_ns())
    outcome = tap(card, LARGE)
    assert (outcome.kind, outcome.cvm) == (OutcomeKind.ONLINE_REQUEST, Cvm.CDCVM)
    icc = field_55(outcome)
    assert icc["9F6C"] == bytes.fromhex("0080")
    assert icc["9F34"] == bytes.fromhex("010002")
    assert icc["9F66"] == bytes.fromhex("A6C04000")  # CVM required
    assert arqc_verifies(outcome)


def test_amounts_at_the_cvm_limit_need_no_cvm(clock: ManualClock) -> None:
    outcome = tap(phone(clock), CONFIG.cvm_limit_minor)
    assert (outcome.kind, outcome.cvm) == (OutcomeKind.ONLINE_REQUEST, Cvm.NO_CVM)


def test_above_the_contactless_limit_is_try_another_interface(clock: ManualClock) -> None:
    card = phone(clock)
    outcome = tap(card, TOO_LARGE)
    assert (outcome.kind, outcome.reason) == (
        OutcomeKind.TRY_ANOTHER_INTERFACE,
        "over_contactless_limit",
    )
    assert outcome.transcript == () and card.key_status(TOKEN_PAN).atc_next == 1
    assert tap(card, CONFIG.contactless_limit_minor).kind is not OutcomeKind.TRY_ANOTHER_INTERFACE


def test_a_terminal_without_cdcvm_asks_for_the_online_pin(clock: ManualClock) -> None:
    config = TerminalConfig(500_000, 100_000, ttq=bytes.fromhex("A6000000"))
    outcome = tap(phone(clock), LARGE, config)
    assert (outcome.kind, outcome.cvm) == (OutcomeKind.ONLINE_REQUEST, Cvm.ONLINE_PIN)
    assert field_55(outcome)["9F6C"] == bytes.fromhex("8000")
    assert arqc_verifies(outcome)


def test_a_fingerprint_on_a_small_tap_is_reported(clock: ManualClock) -> None:
    card = phone(clock)
    card.confirm_cdcvm(clock.now_ns())
    outcome = tap(card)
    assert outcome.cvm is Cvm.CDCVM and field_55(outcome)["9F34"] == bytes.fromhex("010002")


# -- ends -------------------------------------------------------------------------------


def test_a_field_torn_mid_read_record_ends_cleanly(clock: ManualClock) -> None:
    card = phone(clock)
    # PPSE, SELECT AID, GPO and the first record; the phone leaves before the second.
    outcome = tap(card, tear_after=4)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "field_lost")
    assert outcome.authorization is None
    assert outcome.transcript[-1].command_hex == "00B2020C00"
    assert outcome.transcript[-1].response_hex == ""
    # The applet spent the ATC of the GPO it answered, once, and forgot the session.
    assert card.key_status(TOKEN_PAN).atc_next == 2
    assert card.process(apdu.read_record(1, 2)) == bytes.fromhex("6985")
    again = tap(card)
    assert again.kind is OutcomeKind.ONLINE_REQUEST and field_55(again)["9F36"] == b"\x00\x02"
    assert arqc_verifies(again)


def test_a_field_torn_before_the_first_command(clock: ManualClock) -> None:
    outcome = tap(phone(clock), tear_after=0)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "field_lost")
    assert [e.response_hex for e in outcome.transcript] == [""]


def test_a_phone_without_an_aid_the_terminal_supports(clock: ManualClock) -> None:
    config = TerminalConfig(500_000, 100_000, supported_aids=(CREDIT,))
    outcome = tap(phone(clock), config=config)
    assert (outcome.kind, outcome.reason) == (
        OutcomeKind.END_APPLICATION,
        "no_supported_application",
    )
    assert len(outcome.transcript) == 1


def test_the_highest_priority_supported_application_is_chosen(clock: ManualClock) -> None:
    card = phone(clock, (DEBIT, 2), (CREDIT, 1))
    assert tap(card).authorization.aid == CREDIT  # type: ignore[union-attr]
    debit_only = TerminalConfig(500_000, 100_000, supported_aids=(DEBIT,))
    assert tap(card, config=debit_only).authorization.aid == DEBIT  # type: ignore[union-attr]


def test_an_exhausted_luk_ends_the_tap(clock: ManualClock) -> None:
    card = phone(clock, uses=1)
    assert tap(card).kind is OutcomeKind.ONLINE_REQUEST
    outcome = tap(card)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "gpo_refused")
    assert outcome.transcript[-1].response_hex == "6985"


def test_no_possible_cvm_declines_with_the_tvr_bit(clock: ManualClock) -> None:
    config = TerminalConfig(500_000, 100_000, ttq=bytes.fromhex("A0000000"))
    outcome = tap(phone(clock), LARGE, config)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "gpo_refused")
    # The applet refused it (6985); a card that made an ARQC anyway, as if the terminal
    # had not asked for a CVM, is declined here.
    card = Rewriting(phone(clock), lambda command, response: response, _without_cvm_required)
    outcome = tap(card, LARGE, config)
    assert (outcome.kind, outcome.reason) == (OutcomeKind.DECLINED, "cvm_not_possible")
    assert outcome.tvr[2] & 0x80  # cardholder verification was not successful


def test_a_card_that_answers_an_aac_is_declined(clock: ManualClock) -> None:
    outcome = tap(Rewriting(phone(clock), _cid(b"\x00")))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.DECLINED, "card_declined")


def test_a_card_that_sends_a_tag_twice_ends_the_tap(clock: ManualClock) -> None:
    def twice(command: bytes, response: bytes) -> bytes:
        if command == apdu.read_record(1, 2):
            return tlv.encode(Tlv("70", (Tlv("9F36", b"\x00\x09"),))) + b"\x90\x00"
        return response

    outcome = tap(Rewriting(phone(clock), twice))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "card_data_redundant")


def test_the_pdol_is_filled_by_the_dol_rules(clock: ManualClock) -> None:
    """EMV Book 3 §5.4: n values cut or padded on the left, others on the right, unknown
    tags as zeros."""
    pdol = bytes.fromhex("9F02049F6604DF01029F1A03")

    def asks(command: bytes, response: bytes) -> bytes:
        if command == apdu.select_by_name(DEBIT):
            fci = Tlv("6F", (Tlv("84", DEBIT), Tlv("A5", (Tlv("9F38", pdol),))))
            return tlv.encode(fci) + b"\x90\x00"
        return response

    outcome = tap(Rewriting(phone(clock), asks), 123_456)
    gpo = outcome.transcript[2].command_hex
    assert gpo == "80A800000F830D00123456A6C04000000000015600"


# -- any card answer --------------------------------------------------------------------


class Rewriting:
    """A card between the field and the real applet that rewrites its answers."""

    def __init__(
        self,
        inner: PaymentApplet,
        rewrite: Callable[[bytes, bytes], bytes],
        rewrite_command: Callable[[bytes], bytes] = lambda command: command,
    ) -> None:
        self.inner, self.rewrite, self.rewrite_command = inner, rewrite, rewrite_command

    def process(self, command: bytes) -> bytes:
        return self.rewrite(command, self.inner.process(self.rewrite_command(command)))

    def deactivate(self) -> None:
        self.inner.deactivate()


def _in_gpo(tag: str, value: bytes) -> Callable[[bytes, bytes], bytes]:
    def rewrite(command: bytes, response: bytes) -> bytes:
        if command[:2] != b"\x80\xa8" or response[-2:] != b"\x90\x00":
            return response
        (template,) = tlv.decode(response[:-2])
        assert isinstance(template.value, tuple)
        items = tuple(Tlv(tag, value) if item.tag == tag else item for item in template.value)
        return tlv.encode(Tlv("77", items)) + b"\x90\x00"

    return rewrite


def _without_cvm_required(command: bytes) -> bytes:
    """GPO with TTQ byte 2 b7 (CVM required) cleared: 80 A8 00 00 Lc 83 L, then the TTQ."""
    if command[:2] != b"\x80\xa8":
        return command
    return command[:8] + bytes((command[8] & ~0x40,)) + command[9:]


def _cid(value: bytes) -> Callable[[bytes, bytes], bytes]:
    return _in_gpo("9F27", value)


def _ctq(value: bytes) -> Callable[[bytes, bytes], bytes]:
    return _in_gpo("9F6C", value)


class Scripted:
    """A card that answers with the next of its scripted responses."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = responses

    def process(self, command: bytes) -> bytes:
        return self.responses.pop(0) if self.responses else b"\x6f\x00"

    def deactivate(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8), st.integers(0, 600_000))
def test_any_card_answers_give_an_outcome(responses: list[bytes], amount_fen: int) -> None:
    kernel = ContactlessKernel(CONFIG, random.Random(0))
    outcome = kernel.tap(NfcField(Scripted(responses)), Transaction(amount_fen, TODAY))
    assert outcome.kind in OutcomeKind
    assert (outcome.kind is OutcomeKind.ONLINE_REQUEST) == (outcome.authorization is not None)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4), st.integers(0, 300), st.integers(1, 255))
def test_a_flipped_byte_in_any_answer_gives_an_outcome(which: int, at: int, flip: int) -> None:
    clock = ManualClock()

    answered = [0]

    def corrupt(command: bytes, response: bytes) -> bytes:
        answered[0] += 1
        if answered[0] - 1 != which:
            return response
        data = bytearray(response)
        data[at % len(data)] ^= flip
        return bytes(data)

    outcome = tap(Rewriting(phone(clock), corrupt))
    assert outcome.kind in OutcomeKind
    if outcome.kind is OutcomeKind.ONLINE_REQUEST:
        assert outcome.authorization is not None


def test_a_gpo_answer_without_an_afl_ends_the_tap() -> None:
    """Found by the flipped-byte property test: a GPO answer whose AFL (94) was lost
    gave the kernel a KeyError. It is an answer the kernel cannot go on with."""

    def drop_afl(command: bytes, response: bytes) -> bytes:
        if command[:2] != b"\x80\xa8" or response[-2:] != b"\x90\x00":
            return response
        (template,) = tlv.decode(response[:-2])
        assert isinstance(template.value, tuple)
        kept = tuple(item for item in template.value if item.tag != "94")
        return tlv.encode(Tlv("77", kept)) + b"\x90\x00"

    outcome = tap(Rewriting(phone(ManualClock()), drop_afl))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, "card_data_missing")


@pytest.mark.parametrize(("asked", "reason"), [(252, "gpo_refused"), (253, "pdol_malformed")])
def test_pdol_data_is_limited_to_a_short_apdu(clock: ManualClock, asked: int, reason: str) -> None:
    """83 81 FC and 252 bytes fill Lc 255; one byte more cannot be sent."""
    pdol = bytes.fromhex("DF01FC") + bytes.fromhex("DF02") + bytes((asked - 252,))

    def asks(command: bytes, response: bytes) -> bytes:
        if command == apdu.select_by_name(DEBIT):
            fci = Tlv("6F", (Tlv("84", DEBIT), Tlv("A5", (Tlv("9F38", pdol),))))
            return tlv.encode(fci) + b"\x90\x00"
        return response

    outcome = tap(Rewriting(phone(clock), asks))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.END_APPLICATION, reason)
    assert len(outcome.transcript) == (3 if reason == "gpo_refused" else 2)


#: The dialogue docs/contactless.md walks through, byte by byte.
ONE_TAP = (
    (SELECT_PPSE,
     "6F34840E325041592E5359532E4444463031A522BF0C1F611D4F08A000000333010101"
     "500E556E696F6E5061792044656269748701019000"),
    ("00A4040008A00000033301010100",
     "6F418408A000000333010101A535500E556E696F6E506179204465626974870101"
     "9F38189F66049F02069F03069F1A0295055F2A029A039C019F37045F2D047A68656E9000"),
    ("80A80000238321A68040000000000040000000000000000156800000800001562611260038B4E65200",
     "7734820218009404080102009F360200019F100E07010103A0000001050100000001"
     "9F2701809F260850F169631C7999789F6C0200009000"),
    ("00B2010C00", "700E570C6299990000000016D29112019000"),
    ("00B2020C00", "70195A0862999900000000165F24032911305F280201565F3401019000"),
)  # fmt: skip


def test_one_tap_byte_by_byte(clock: ManualClock) -> None:
    held = HceCard(TOKEN_PAN, "2911", 1, DEBIT, "UnionPay Debit", 1, luk(clock))
    outcome = tap(PaymentApplet([held], clock), seed=7)
    assert [(e.command_hex, e.response_hex) for e in outcome.transcript] == list(ONE_TAP)
    assert arqc_verifies(outcome)


@pytest.mark.parametrize(
    ("amount", "other", "kind"), [(-1, 0, 0x00), (10**12, 0, 0x00), (1, -1, 0x00), (1, 0, 0x1A)]
)
def test_a_transaction_the_kernel_cannot_send_is_refused(
    amount: int, other: int, kind: int
) -> None:
    with pytest.raises(TransactionInvalid):
        Transaction(amount, TODAY, other, kind)


def test_a_malformed_terminal_config_is_refused() -> None:
    with pytest.raises(TerminalConfigError, match="9F66"):
        TerminalConfig(500_000, 100_000, ttq=b"\xa6")
    with pytest.raises(TerminalConfigError, match="AIDs"):
        TerminalConfig(500_000, 100_000, supported_aids=())
    with pytest.raises(TerminalConfigError, match="limits"):
        TerminalConfig(-1, 100_000)
