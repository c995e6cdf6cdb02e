"""QR codes of Millet Pay payments, both ways (EMV QRCPS, `milletpay.emv.qr`).

Merchant-presented: a merchant's static code (printed at the till: the payer types the
amount) names the merchant in Millet Pay's template 26 (GUID `COM.MILLETPAY`, sub-tag 01
the merchant id); a dynamic code for one payment intent carries its amount and, in
sub-tag 02, the intent's client secret, so the wallet that scans it can show and pay that
intent. `read_merchant_code` tells which a scanned code is, or refuses a code that is
not Millet Pay's (`qr_not_payable`). Tags 59 and 60 carry the merchant's name and city
in Latin characters (`Merchant.qr_name`, `qr_city`); a merchant whose shown name or city
is in another script has them in the language template (64) as well. A merchant whose
record cannot make a valid code is `MerchantQrInvalid` (`qr_invalid`) naming the
merchant's field at fault, never a bare `QrError`.

Consumer-presented: the wallet shows a one-time payment code, as EMV CPM (base64 BER-TLV)
and as 18 digits for a cashier to type or a barcode (`emv.qr.encode_numeric_code`). It
is valid for `PAYMENT_CODE_TTL_S` and once; a new code revokes the user's earlier ones.
The CPM form carries the code's digits (5A) and a cryptogram (9F26: an HMAC of the code
under a key-ring key), so a forged CPM for a guessed number is refused. A merchant
collects with a code: `PaymentCodes.claim_in` marks it used in the merchant's
transaction and answers whose wallet pays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from milletpay.checkout.errors import CheckoutError
from milletpay.checkout.merchants import Merchant
from milletpay.checkout.tables import payment_codes
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.emv.qr import (
    NUMERIC_CODE,
    QR_INVALID,
    AlternateLanguage,
    CpmPayload,
    CpmTemplate,
    Field,
    Initiation,
    MpmPayload,
    QrError,
    Template,
    decode_cpm,
    decode_mpm,
    decode_numeric_code,
    encode_cpm,
    encode_mpm,
    encode_numeric_code,
)
from milletpay.emv.tlv import Tlv
from milletpay.ledger.engine import LedgerTransaction

MILLET_GUID: Final = "COM.MILLETPAY"
MILLET_TEMPLATE_ID: Final = "26"
SUBTAG_MERCHANT: Final = "01"
SUBTAG_CLIENT_SECRET: Final = "02"
COUNTRY: Final = "CN"
CURRENCY: Final = "CNY"
#: How long a payment code may be collected with.
PAYMENT_CODE_TTL_S: Final = 60
#: Millet Pay's own application id for the wallet balance in a CPM code (proprietary: F).
WALLET_AID: Final = bytes.fromhex("F0000006585001")
WALLET_LABEL: Final = "MILLET PAY"
CRYPTOGRAM_BYTES: Final = 8
BILL_NUMBER_CHARS_MAX: Final = 25  # EMV QR 62.01
#: Tries at drawing a code number that is not taken.
CODE_NUMBER_ATTEMPTS_MAX: Final = 8
_CRYPTOGRAM_PURPOSE: Final = b"milletpay/checkout/payment-code-cryptogram/v1"


class QrNotPayable(CheckoutError):
    """A well-formed code that is not a Millet Pay merchant's, or of a merchant or intent
    unknown here."""

    code = "qr_not_payable"


class PaymentCodeRefused(CheckoutError):
    """A payment code that does not pay: malformed, unknown, forged, expired, used or
    replaced. `code` says which; nothing is changed."""

    code = "payment_code_invalid"


class MerchantQrInvalid(CheckoutError):
    """The merchant's record (or the intent's order id) cannot make a valid code: the
    message is the QR rule broken, naming its tag; `field` the merchant's field that
    fed that tag."""

    code = QR_INVALID


@dataclass(frozen=True, slots=True)
class MerchantCode:
    """What a scanned merchant code asks the wallet to pay: the merchant (static; the
    payer types the amount) or one intent (dynamic; `client_secret` and amount set)."""

    merchant_id: int | None
    client_secret: str | None
    amount_fen: int | None
    payload: MpmPayload


@dataclass(frozen=True, slots=True, repr=False)
class IssuedCode:
    numeric: str
    cpm: str
    expires_at_ns: int

    def __repr__(self) -> str:
        return f"IssuedCode(expires_at_ns={self.expires_at_ns})"


def static_code(merchant: Merchant) -> str:
    """The merchant's printed code: no amount, reused. `MerchantQrInvalid` naming the
    field when the merchant's record cannot make one."""
    payload = _merchant_payload(
        merchant, Initiation.STATIC, None, SUBTAG_MERCHANT, f"{merchant.id:032x}"
    )
    return _encoded(payload, merchant)


def dynamic_code(merchant: Merchant, client_secret: str, amount_fen: int, order_id: str) -> str:
    """A code for one payment intent: its amount, its client secret, the order as bill
    number (62.01). `MerchantQrInvalid` naming the field when one cannot be made."""
    payload = _merchant_payload(
        merchant, Initiation.DYNAMIC, amount_fen, SUBTAG_CLIENT_SECRET, client_secret
    )
    bill = (Field("01", order_id[:BILL_NUMBER_CHARS_MAX]),)
    return _encoded(dataclasses.replace(payload, additional_data=bill), merchant)


def read_merchant_code(text: str) -> MerchantCode:
    """A scanned merchant-presented code. `QrError` (`qr_invalid`, naming the tag) for a
    code that breaks the spec; `QrNotPayable` for one that is not Millet Pay's."""
    payload = decode_mpm(text)
    ours = next(
        (
            entry
            for entry in payload.merchant_accounts
            if isinstance(entry, Template) and entry.guid == MILLET_GUID
        ),
        None,
    )
    if ours is None:
        raise QrNotPayable("not a Millet Pay merchant's code: pay it with its own network's app")
    values = {item.id: item.value for item in ours.fields}
    if payload.currency != CURRENCY:
        raise QrNotPayable(f"the code asks for {payload.currency}; Millet Pay pays in CNY")
    secret = values.get(SUBTAG_CLIENT_SECRET)
    merchant = values.get(SUBTAG_MERCHANT)
    if secret is not None and payload.initiation is Initiation.DYNAMIC:
        return MerchantCode(None, secret, payload.amount_minor, payload)
    if merchant is not None and len(merchant) == 32 and _is_hex(merchant):
        return MerchantCode(int(merchant, 16), None, None, payload)
    raise QrNotPayable("the code names no Millet Pay merchant or payment")


class PaymentCodes:
    """One-time payment codes; thread-safe."""

    def __init__(self, engine: sa.Engine, keyring: KeyRing, clock: Clock) -> None:
        self._engine = engine
        self._key = keyring.derive(_CRYPTOGRAM_PURPOSE)
        self._clock = clock
        self._ids = IdGenerator(clock)

    def issue(self, user_id: int) -> IssuedCode:
        """A new code for the user's wallet; the user's earlier unused codes are revoked."""
        now_ns = self._clock.now_ns()
        expires_ns = now_ns + PAYMENT_CODE_TTL_S * NS_PER_S
        user = id_to_bytes(user_id)
        c = payment_codes.c
        for _ in range(CODE_NUMBER_ATTEMPTS_MAX):
            number = secrets.randbelow(10**NUMERIC_CODE.id_digits)
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        sa.update(payment_codes)
                        .where(c.user_id == user, c.used_at.is_(None), c.revoked_at.is_(None))
                        .values(revoked_at=now_ns)
                    )
                    conn.execute(
                        sa.insert(payment_codes).values(
                            id=id_to_bytes(self._ids.next_id()),
                            code_number=number,
                            user_id=user,
                            issued_at=now_ns,
                            expires_at=expires_ns,
                        )
                    )
            except sa.exc.IntegrityError:  # the number is taken: draw again
                continue
            numeric = encode_numeric_code(number)
            return IssuedCode(numeric, self._cpm(numeric, number), expires_ns)
        raise PaymentCodeRefused("no free payment code number; try again")

    def claim_in(self, tx: LedgerTransaction, text: str, intent_id: int) -> int:
        """The user whose code `text` (18 digits, or the CPM base64) is, the code marked
        used for `intent_id` in `tx`. `PaymentCodeRefused` naming why."""
        number = self._number(text)
        now_ns = self._clock.now_ns()
        c = payment_codes.c
        row = tx.connection.execute(sa.select(payment_codes).where(c.code_number == number)).first()
        if row is None:
            raise PaymentCodeRefused("no such payment code")
        if row.used_at is not None:
            raise PaymentCodeRefused("the payment code was used already", code="payment_code_used")
        if row.revoked_at is not None:
            raise PaymentCodeRefused("a newer code replaced this one", code="payment_code_revoked")
        if now_ns >= row.expires_at:
            raise PaymentCodeRefused("the payment code expired", code="payment_code_expired")
        done = tx.connection.execute(
            sa.update(payment_codes)
            .where(c.id == row.id, c.used_at.is_(None))
            .values(used_at=now_ns, intent_id=id_to_bytes(intent_id))
        )
        if done.rowcount != 1:
            raise PaymentCodeRefused("the payment code was used already", code="payment_code_used")
        return id_from_bytes(row.user_id)

    def _number(self, text: str) -> int:
        try:
            if text.replace(" ", "").isdigit():
                return decode_numeric_code(text)
            payload = decode_cpm(text)
        except QrError as error:
            raise PaymentCodeRefused(error.message) from None
        (application, *_) = payload.applications
        if application.aid != WALLET_AID or application.pan is None:
            raise PaymentCodeRefused("not a Millet Pay payment code")
        try:
            number = decode_numeric_code(application.pan)
        except QrError as error:
            raise PaymentCodeRefused(error.message) from None
        given = application.transaction_data().get("9F26", b"")
        if not hmac.compare_digest(given, self._cryptogram(number)):
            raise PaymentCodeRefused("the payment code's cryptogram is wrong")
        return number

    def _cpm(self, numeric: str, number: int) -> str:
        application = CpmTemplate(
            aid=WALLET_AID,
            label=WALLET_LABEL,
            pan=numeric,
            transparent=(Tlv("9F26", self._cryptogram(number)),),
        )
        return encode_cpm(CpmPayload((application,)))

    def _cryptogram(self, number: int) -> bytes:
        digest = hmac.new(self._key, number.to_bytes(8, "big"), hashlib.sha256).digest()
        return digest[:CRYPTOGRAM_BYTES]


def _merchant_payload(
    merchant: Merchant, initiation: Initiation, amount_fen: int | None, subtag: str, value: str
) -> MpmPayload:
    account = Template(MILLET_TEMPLATE_ID, (Field("00", MILLET_GUID), Field(subtag, value)))
    return MpmPayload(
        merchant_accounts=(account,),
        merchant_category_code=merchant.mcc,
        currency=CURRENCY,
        country=COUNTRY,
        merchant_name=merchant.qr_name,
        merchant_city=merchant.qr_city,
        initiation=initiation,
        amount_minor=amount_fen,
        alternate_language=_language_template(merchant),
    )


def _language_template(merchant: Merchant) -> AlternateLanguage | None:
    """Tag 64: the shown name (01, mandatory) and, when it is not the Latin one, the
    shown city (02), in the merchant's language (00, upper case as EMVCo's example)."""
    if merchant.name_language is None:
        return None
    city = merchant.city if merchant.city_latin is not None else None
    return AlternateLanguage(merchant.name_language.upper(), merchant.display_name, city)


def _encoded(payload: MpmPayload, merchant: Merchant) -> str:
    try:
        return encode_mpm(payload)
    except QrError as error:
        raise MerchantQrInvalid(error.message, field=_field_of(error.tag, merchant)) from None


def _field_of(tag: str | None, merchant: Merchant) -> str | None:
    """The field of the merchant (or of the intent) that a code's tag came from."""
    fields = {
        "52": "mcc",
        "59": "name_latin" if merchant.name_latin is not None else "display_name",
        "60": "city_latin" if merchant.city_latin is not None else "city",
        "62.01": "merchant_order_id",
        "64.00": "name_language",
        "64.01": "display_name",
        "64.02": "city",
    }
    return None if tag is None else fields.get(tag)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
