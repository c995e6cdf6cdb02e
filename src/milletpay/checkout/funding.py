"""Where a payment intent's money comes from: one class per funding source, one protocol.

`PaymentIntents` keeps the intent's statuses, its fee and its events; a `FundingSource`
moves the payer's side of the money in the caller's ledger transaction: pay (or hold),
capture a hold, release it, refund. Each source says which intents it may pay
(`check`) and names the column of the intent that records its operation. A new source
is a new `Funding` value, a class here and its entry in `PaymentIntents`' sources;
nothing else in the intent's flow changes.

- `WalletFunding`: the wallet balance (`WalletService`, risk kind `merchant_payment`).
- `CoinFunding`: Millet coins (`CoinService`, risk kind `coin_payment`), only at merchants
  of a digital-goods MCC and only for whole coins (an amount in fen that is not a whole
  number of coins is refused, never rounded: the payer pays exactly the price or not at
  all). The coins are retired and the merchant is owed their CNY value from coin sales;
  a refund re-issues coins, never cash.

A tokenized bank card (`Funding.CARD`) is a funding source of the same intents but not a
`FundingSource`: its money moves at the issuer, through the card network, so it cannot
run inside one ledger transaction with the intent. `card_funding.py` pays it in three
steps instead (admit the intent, exchange the messages with the switch, settle), and
captures, cancels and refunds it through the network; `PaymentIntents` refuses those
for a card's intent.

No source ever commits: everything happens in the transaction it is handed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from milletpay.checkout.errors import CoinAmountNotWhole, CoinsNotAccepted
from milletpay.checkout.fees import DIGITAL_GOODS_MCCS
from milletpay.checkout.merchants import Merchant
from milletpay.ledger import U128_MAX, CreateTransferResult, Transfer, TransferFlags
from milletpay.ledger.engine import LedgerTransaction
from milletpay.wallet import WalletService
from milletpay.wallet import coins as wallet_coins
from milletpay.wallet.accounts import FEN_PER_COIN, LEDGER_CNY, TransferCode, wallet_account_id
from milletpay.wallet.coins import CoinService
from milletpay.wallet.service import OperationStatus, merchant_payment_transfer_id
from milletpay.wallet.tables import CoinOperationStatus

if TYPE_CHECKING:
    from milletpay.checkout.intents import PaymentIntent


class Funding(enum.StrEnum):
    """The funding source of a confirmation, as the API names it and the intent keeps it."""

    WALLET = "wallet"
    COINS = "coins"
    CARD = "card"  # a tokenized bank card through the card network (`card_funding.py`)


@dataclass(frozen=True, slots=True)
class Paid:
    """A source's answer to a payment: its operation, the transfer (or hold) that moved
    the money, or the decline with the limit that made it and what of it remains."""

    operation_id: int
    transfer_id: int
    decline_code: str | None = None
    limit_fen: int | None = None
    remaining_fen: int | None = None


@dataclass(frozen=True, slots=True)
class Returned:
    """A source's answer to a refund: its operation, and the decline if it was not paid."""

    operation_id: int
    decline_code: str | None = None


class FundingSource(Protocol):
    funding: Funding
    #: The `payment_intents` (and `refunds`) column of the source's operation.
    operation_column: str

    def check(self, merchant: Merchant, amount_fen: int) -> None:
        """Raise a `CheckoutError` naming why this source cannot pay `amount_fen` to the
        merchant; nothing has changed then."""

    def pay_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant: Merchant,
        amount_fen: int,
        key: str,
        hold_timeout_s: int,
        then: Sequence[Transfer] = (),
    ) -> Paid:
        """Pay (or with `hold_timeout_s`, hold) `amount_fen` to the merchant; `key` is the
        payer's operation key, one per intent and attempt. `then`: the caller's transfers
        that follow a payment (the merchant's fee), made if and only if it is."""

    def capture_in(
        self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant, taken_fen: int
    ) -> None:
        """Take `taken_fen` of the intent's hold for the merchant; release the rest."""

    def release_in(self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant) -> None:
        """Release the intent's hold (nothing left if the ledger let it expire)."""

    def refund_in(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        merchant: Merchant,
        amount_fen: int,
        key: str,
    ) -> Returned:
        """Give `amount_fen` back from the merchant to the payer, where it came from."""


class WalletFunding:
    """The payer's wallet balance."""

    funding = Funding.WALLET
    operation_column = "wallet_operation_id"

    def __init__(self, wallet: WalletService) -> None:
        self._wallet = wallet

    def check(self, merchant: Merchant, amount_fen: int) -> None:
        return None  # every merchant, every amount: the limits judge it

    def pay_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant: Merchant,
        amount_fen: int,
        key: str,
        hold_timeout_s: int,
        then: Sequence[Transfer] = (),
    ) -> Paid:
        outcome = self._wallet.pay_merchant_in(
            tx,
            user_id,
            merchant.account_id,
            amount_fen,
            key,
            hold_timeout_s=hold_timeout_s,
            then=then,
        )
        assert (outcome.status is OperationStatus.COMPLETED) == (outcome.decline_code is None)
        return Paid(
            outcome.operation_id,
            merchant_payment_transfer_id(user_id, key),
            outcome.decline_code,
            outcome.limit,
            outcome.remaining,
        )

    def capture_in(
        self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant, taken_fen: int
    ) -> None:
        post = _hold_end(intent, merchant, "capture", TransferFlags.POST_PENDING_TRANSFER)
        post = dataclasses.replace(post, amount=taken_fen)
        (result,) = tx.create_transfers([post])
        _require_ok(result, post)
        self._wallet.end_merchant_hold_in(tx, _operation(intent.wallet_operation_id), taken_fen)

    def release_in(self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant) -> None:
        void = _hold_end(intent, merchant, "release", TransferFlags.VOID_PENDING_TRANSFER)
        (result,) = tx.create_transfers([void])
        # The ledger's backstop timeout released it already: nothing left to void.
        if result is not CreateTransferResult.PENDING_TRANSFER_EXPIRED:
            _require_ok(result, void)
        self._wallet.end_merchant_hold_in(tx, _operation(intent.wallet_operation_id), 0)

    def refund_in(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        merchant: Merchant,
        amount_fen: int,
        key: str,
    ) -> Returned:
        outcome = self._wallet.receive_refund_in(
            tx, _payer(intent), merchant.account_id, amount_fen, key
        )
        return Returned(outcome.operation_id, outcome.decline_code)


class CoinFunding:
    """The payer's Millet coins: digital-goods merchants only, whole coins only."""

    funding = Funding.COINS
    operation_column = "coin_operation_id"

    def __init__(self, coins: CoinService) -> None:
        self._coins = coins

    def check(self, merchant: Merchant, amount_fen: int) -> None:
        if not merchant.digital_goods:
            raise CoinsNotAccepted(
                f"{merchant.display_name} (MCC {merchant.mcc}) does not sell digital goods; "
                f"coins pay only merchants of MCC {', '.join(sorted(DIGITAL_GOODS_MCCS))}",
                field="funding",
            )
        check_whole_coins(amount_fen)

    def pay_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant: Merchant,
        amount_fen: int,
        key: str,
        hold_timeout_s: int,
        then: Sequence[Transfer] = (),
    ) -> Paid:
        outcome = self._coins.pay_merchant_in(
            tx,
            user_id,
            _merchant_ref(merchant),
            merchant.account_id,
            check_whole_coins(amount_fen),
            key,
            hold_timeout_s=hold_timeout_s,
        )
        assert (outcome.status is CoinOperationStatus.COMPLETED) == (outcome.decline_code is None)
        if outcome.decline_code is None and then:
            for transfer, result in zip(then, tx.create_transfers(list(then)), strict=True):
                _require_ok(result, transfer)
        return Paid(
            outcome.operation_id,
            wallet_coins.merchant_payment_transfer_id(user_id, key),
            outcome.decline_code,
            outcome.limit,
            outcome.remaining,
        )

    def capture_in(
        self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant, taken_fen: int
    ) -> None:
        operation = _operation(intent.coin_operation_id)
        taken_coins = check_whole_coins(taken_fen)
        self._coins.end_merchant_hold_in(tx, operation, merchant.account_id, taken_coins)

    def release_in(self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant) -> None:
        operation = _operation(intent.coin_operation_id)
        self._coins.end_merchant_hold_in(tx, operation, merchant.account_id, 0)

    def refund_in(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        merchant: Merchant,
        amount_fen: int,
        key: str,
    ) -> Returned:
        outcome = self._coins.receive_refund_in(
            tx,
            _payer(intent),
            _merchant_ref(merchant),
            merchant.account_id,
            check_whole_coins(amount_fen),
            key,
        )
        return Returned(outcome.operation_id, outcome.decline_code)


def check_whole_coins(amount_fen: int) -> int:
    """The coins worth exactly `amount_fen`; `CoinAmountNotWhole` if it is not a whole
    number of coins (coins have no minor unit, and a price is never rounded)."""
    coins, rest = divmod(amount_fen, FEN_PER_COIN)
    if rest:
        raise CoinAmountNotWhole(
            f"{amount_fen} fen is not a whole number of coins (1 coin = {FEN_PER_COIN} fen)",
            field="amount_fen",
        )
    return coins


def intent_transfer_id(intent_id: int, leg: str) -> int:
    """The id of the intent's transfer `leg` (capture, release, fee, ...)."""
    h = hashlib.blake2b(digest_size=16, person=b"millet.checkout")
    h.update(intent_id.to_bytes(16, "big"))
    h.update(leg.encode("ascii"))
    value = int.from_bytes(h.digest(), "big")
    assert 0 < value < U128_MAX
    return value


def _hold_end(
    intent: PaymentIntent, merchant: Merchant, leg: str, flags: TransferFlags
) -> Transfer:
    """The post or void of the wallet's hold for the intent (for all it holds)."""
    assert intent.payment_transfer_id is not None
    return Transfer(
        intent_transfer_id(intent.id, leg),
        wallet_account_id(_payer(intent)),
        merchant.account_id,
        intent.amount_capturable_fen,
        LEDGER_CNY,
        TransferCode.MERCHANT_PAYMENT,  # a post or void keeps its hold's code
        flags=flags,
        pending_id=intent.payment_transfer_id,
        user_data_128=intent.id,
    )


def _merchant_ref(merchant: Merchant) -> str:
    return f"{merchant.id:032x}"


def _payer(intent: PaymentIntent) -> int:
    assert intent.payer_user_id is not None
    return intent.payer_user_id


def _operation(operation_id: int | None) -> int:
    assert operation_id is not None, "a paid intent names its funding operation"
    return operation_id


def _require_ok(result: CreateTransferResult, transfer: Transfer) -> None:
    assert result is CreateTransferResult.OK, f"transfer {transfer.id:032x}: {result}"
