"""The tap record: what a gate keeps of each debit it completed, and uploads later.

A record holds exactly what the card's TAC covers (`PurchaseData`: amount, transaction
type, the gate's terminal id and transaction number, date and time), so clearing can check
the TAC with the city's TAC key and nothing else. It is keyed by the card number and the
card's offline counter before the debit: the card increments the counter by exactly one
per debit, so that pair names one debit for ever, and an upload of the same record again
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from milletpay.transit.fares import Mode, Tap
from milletpay.transit.purse_crypto import PurchaseData

CARD_NUMBER_BYTES: Final = 10  # file 0x15's application serial number
TAC_BYTES: Final = 4
OFFLINE_COUNTER_MAX: Final = 0xFFFF  # 2 bytes on the card


@dataclass(frozen=True, slots=True)
class TapRecord:
    """One completed debit at a gate (a fare of 0 is recorded too: it closes a trip)."""

    city: str
    gate_id: str
    card_number: bytes
    offline_counter: int  # the card's counter the debit used (before its +1)
    purchase: PurchaseData  # what the TAC covers
    balance_after_fen: int  # the card's balance after the debit (negative: overdrawn)
    key_version: int
    tac: bytes
    mode: Mode
    tap: Tap
    station: str
    tapped_at_ns: int
    resolved_torn: bool = False  # completed at a later tap by GET TRANSACTION PROVE

    def __post_init__(self) -> None:
        assert len(self.card_number) == CARD_NUMBER_BYTES
        assert 0 <= self.offline_counter <= OFFLINE_COUNTER_MAX
        assert len(self.tac) == TAC_BYTES

    @property
    def key(self) -> tuple[bytes, int]:
        """What names the debit: (card number, offline counter)."""
        return self.card_number, self.offline_counter

    @property
    def amount_fen(self) -> int:
        return self.purchase.amount_fen
