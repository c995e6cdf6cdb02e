"""Detokenization: a token number back to its card, for the card network only.

`Detokenizer` is the one way from a token to a PAN. The card network holds one (the
tap-to-pay flow calls it when a token payment arrives, before it asks the issuer to
authorize the card); nothing that faces the phone, the wallet API or a merchant is ever
given one. It answers the card behind an active token used in the domain the token is
bound to, and refuses anything else with a stable code, revealing nothing of the card.
A re-issued card answers its new PAN and expiry: the token did not change.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from milletpay.banks.model import cst_now
from milletpay.cards.lifecycle import TokenState
from milletpay.cards.pan import PAN_DIGITS_MAX, PAN_DIGITS_MIN, Expiry, Pan, mask_pan
from milletpay.cards.tokens import TokenDomain, domain_allows
from milletpay.cards.vault import PanVault, VaultRef
from milletpay.core.clock import Clock
from milletpay.core.ids import id_from_bytes
from milletpay.store.sql import Sql

log = logging.getLogger(__name__)


class DetokenizeCode(enum.StrEnum):
    OK = "ok"
    TOKEN_UNKNOWN = "token_unknown"
    TOKEN_NOT_ACTIVE = "token_not_active"  # inactive, suspended or deleted
    TOKEN_EXPIRED = "token_expired"
    DOMAIN_MISMATCH = "token_domain_mismatch"


@dataclass(frozen=True, slots=True)
class Detokenized:
    """The answer: `code`, and for `OK` the card (its repr masks the PAN)."""

    code: DetokenizeCode
    pan: Pan | None = None
    expiry: Expiry | None = None
    bank_code: str = ""
    token_id: int = 0

    @property
    def ok(self) -> bool:
        return self.code is DetokenizeCode.OK


class Detokenizer:
    """The card network's detokenization service; thread-safe."""

    def __init__(self, engine: sa.Engine, vault: PanVault, clock: Clock) -> None:
        self._engine = engine
        self._vault = vault
        self._clock = clock

    def detokenize(
        self, token_number: str, domain: TokenDomain, device_id: str | None = None
    ) -> Detokenized:
        """The card behind `token_number` if the token is active, not expired, and may
        pay in `domain` (`tokens.domain_allows`: an in-app payment from the token's own
        device `device_id`); otherwise a refusal code."""
        row = None
        if len(token_number) <= PAN_DIGITS_MAX:
            row = self._row(token_number)
        if row is None:
            # What was sent may be anything, a card number too: only its mask is logged.
            log.info("detokenization of %s refused: token_unknown", _masked(token_number))
            return Detokenized(DetokenizeCode.TOKEN_UNKNOWN)
        refusal = self._refusal(row, domain, device_id)
        if refusal is not None:
            log.info("detokenization of %s refused: %s", token_number, refusal)
            return Detokenized(refusal)
        card = self._vault.open_sealed(VaultRef(id_from_bytes(row.vault_ref)), row.sealed)
        return Detokenized(
            DetokenizeCode.OK, card.pan, card.expiry, row.bank_code, id_from_bytes(row.id)
        )

    def _row(self, token_number: str) -> Any:
        with self._engine.connect() as conn:  # one statement: its own snapshot
            return _TOKEN_BY_NUMBER.run(conn, the_number=token_number).first()

    def _refusal(
        self, row: Any, domain: TokenDomain, device_id: str | None
    ) -> DetokenizeCode | None:
        if row.state != TokenState.ACTIVE:
            return DetokenizeCode.TOKEN_NOT_ACTIVE
        now = cst_now(self._clock)
        expiry = str(row.expiry)
        if (now.year, now.month) > (int(expiry[:4]), int(expiry[4:])):
            return DetokenizeCode.TOKEN_EXPIRED
        if not domain_allows(TokenDomain(row.domain), row.device_id, domain, device_id):
            return DetokenizeCode.DOMAIN_MISMATCH
        return None


#: Every tap detokenizes. The vault's sealed card comes in the same read.
_TOKEN_BY_NUMBER: Final = Sql(
    """SELECT t.id, t.vault_ref, t.bank_code, t.state, t.domain, t.expiry, t.device_id,
        v.sealed
    FROM tokens t LEFT JOIN vault_pans v ON v.id = t.vault_ref
    WHERE t.token_number = :the_number"""
)


def _masked(number: str) -> str:
    """An unknown token number as it may be logged: masked like a PAN, or its length."""
    digits = number.isascii() and number.isdigit()
    if digits and PAN_DIGITS_MIN <= len(number) <= PAN_DIGITS_MAX:
        return mask_pan(number)
    return f"<{len(number)} characters>"
