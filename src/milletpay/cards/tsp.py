"""`TokenService`: the token service provider (EMV Payment Tokenisation roles).

Provisioning: the phone sends the card sealed to the TSP's key (`envelope.py`); the TSP
checks that a partner bank issues it (BIN eligibility), asks the issuer for its ID&V
decision (`Bank.idv`), vaults the card and makes a token from the issuer's token IIN
range, bound to the user's device and to one domain:
- green: the token is active at once;
- yellow: the token is inactive and a one-time code goes by SMS to the phone on file at
  the bank; `confirm_step_up` activates it, or deletes it after `STEP_UP_ATTEMPTS_MAX`
  wrong codes or once the code lapsed (`STEP_UP_TTL_S`). With no phone on file no code
  is sent: the issuer activates the token (`on_issuer_event(..., ACTIVATE)`);
- red: no token; the answer names the issuer's reason.

Lifecycle: every change goes through `lifecycle.apply` and is written compare-and-set on
the state the change was decided from, so two concurrent changes never both apply to the
same starting state. The cardholder, the issuer, a lost or unbound device move tokens;
a re-issued card changes the vault row behind the tokens, not the tokens.

The card number is opened only to ask the issuer; it is never logged, stored outside
the vault, or returned. Token numbers are not card numbers and are logged in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from milletpay.banks import Banks, IdvOutcome, bank_for_pan
from milletpay.banks.model import cst_now
from milletpay.cards.envelope import open_card_envelope, tsp_public_key
from milletpay.cards.errors import (
    CardNotVaulted,
    TokenBusy,
    TokenNumbersExhausted,
    TokenRequestInvalid,
    TokenUnknown,
)
from milletpay.cards.lifecycle import (
    Lifecycle,
    Party,
    TokenEvent,
    TokenState,
    TokenTransitionRefused,
    apply,
)
from milletpay.cards.pan import Expiry, Pan
from milletpay.cards.tables import token_step_up_sends, token_step_ups, tokens
from milletpay.cards.tokens import (
    TOKEN_PSN,
    TOKEN_VALIDITY_YEARS,
    BulkChange,
    DeclineCode,
    ProvisionAnswer,
    ProvisionOutcome,
    RandBelow,
    StepUpAnswer,
    StepUpChannel,
    StepUpStatus,
    Token,
    TokenDomain,
    TokenRefusal,
    new_token_number,
)
from milletpay.cards.vault import PanVault, VaultEntry, VaultRef
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.identity.otp import SmsChannel
from milletpay.store.engine import write_transaction

STEP_UP_CODE_DIGITS: Final = 6
STEP_UP_TTL_S: Final = 300
STEP_UP_ATTEMPTS_MAX: Final = 5
#: Codes texted for one card in any 24 hours; one more request is declined unsent.
STEP_UP_SENDS_PER_CARD_MAX: Final = 5
STEP_UP_SENDS_WINDOW_S: Final = 86_400
STEP_UP_KEY_PURPOSE: Final = b"milletpay/cards/step-up-code/v1"
#: Numbers drawn for one token before giving up (a collision is ~1 in 10^12 per draw).
TOKEN_NUMBER_ATTEMPTS_MAX: Final = 8
#: Tries of a compare-and-set lifecycle change that lost to a concurrent one.
TRANSITION_ATTEMPTS_MAX: Final = 3
#: The most tokens one device or card event changes (3 domains × many cards; a bound).
BULK_TOKENS_MAX: Final = 1_000
DEVICE_ID_CHARS_MAX: Final = 64
_SEPARATOR: Final = ","

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """The wallet's request: whose phone, which domain, the card sealed by the phone."""

    user_id: int
    device_id: str
    domain: TokenDomain
    wallet_phone: str  # the wallet user's verified phone (`+86` form), for ID&V
    envelope: str


class TokenService:
    """The TSP core; thread-safe. `Detokenizer` (detokenize.py) is the network's side."""

    def __init__(
        self,
        engine: sa.Engine,
        vault: PanVault,
        keyring: KeyRing,
        banks: Banks,
        sms: SmsChannel,
        clock: Clock,
        *,
        randbelow: RandBelow = secrets.randbelow,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._keyring = keyring
        self._banks = banks
        self._sms = sms
        self._clock = clock
        self._ids = IdGenerator(clock)
        self._randbelow = randbelow
        self._code_key = keyring.derive(STEP_UP_KEY_PURPOSE)

    def public_key(self) -> bytes:
        """The key the phone seals the card to (`envelope.seal_card_for_tsp`)."""
        return tsp_public_key(self._keyring)

    # -- provisioning ----------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ProvisionAnswer:
        """A token for the card in the envelope, or a decline naming why.
        `CardEnvelopeInvalid`, `PanInvalid`, `ExpiryInvalid`, `Cvn2Invalid`,
        `TokenRequestInvalid` for input to fix; nothing is stored then."""
        _check_device_id(request.device_id)
        domain = TokenDomain(request.domain)
        card = open_card_envelope(self._keyring, request.envelope)
        digits = card.pan.clear_digits()
        bank = self._banks.bank_for_pan(digits)
        if bank is None:
            return _declined(DeclineCode.ISSUER_NOT_PARTNER)
        spec = bank.spec
        if not any(digits.startswith(product.iin) for product in spec.products):
            return _declined(DeclineCode.PRODUCT_NOT_TOKENIZABLE)
        expiry_yymm = f"{card.expiry.year % 100:02d}{card.expiry.month:02d}"
        decision = bank.idv(digits, expiry_yymm, card.cvn2, request.wallet_phone)
        if decision.outcome is IdvOutcome.RED:
            log.info(
                "token request for %s declined by %s: %s", card.pan, spec.code, decision.reason
            )
            return _declined(DeclineCode.IDV_DECLINED, decision.reason)
        ref = self._vault.store(card.pan, card.expiry)
        entry = self._vault.entry(ref)
        step_up = decision.outcome is IdvOutcome.YELLOW
        code = f"{secrets.randbelow(10**STEP_UP_CODE_DIGITS):0{STEP_UP_CODE_DIGITS}d}"
        row = self._new_row(request, domain, entry, spec.code, card.pan.length, step_up)
        try:
            existing = self._insert(row, code if decision.phone_on_file else None)
        except _StepUpSendsExceeded:
            log.info("token request for %s: step-up codes for the card used up", card.pan)
            return _declined(
                DeclineCode.STEP_UP_LIMIT,
                f"{STEP_UP_SENDS_PER_CARD_MAX} codes were sent for this card in 24 hours",
            )
        if existing is not None:
            return _declined(DeclineCode.TOKEN_EXISTS, f"token {existing:032x} is live")
        token = _token(row)
        log.info(
            "token %s (%s) for card %s on device %s, %s",
            token.number,
            domain,
            ref,
            request.device_id,
            token.state,
        )
        if not step_up:
            return ProvisionAnswer(ProvisionOutcome.APPROVED, token, reason=decision.reason)
        if decision.phone_on_file:
            self._sms.send(decision.phone_on_file, _step_up_text(code, spec.name))
        channel = StepUpChannel.SMS if decision.phone_on_file else StepUpChannel.ISSUER
        return ProvisionAnswer(
            ProvisionOutcome.STEP_UP,
            token,
            reason=decision.reason,
            step_up=channel,
            phone_masked=decision.phone_masked,
        )

    def _new_row(
        self,
        request: ProvisionRequest,
        domain: TokenDomain,
        entry: VaultEntry,
        bank_code: str,
        digits: int,
        step_up: bool,
    ) -> dict[str, Any]:
        now = cst_now(self._clock)
        now_ns = self._clock.now_ns()
        return {
            "id": id_to_bytes(self._ids.next_id()),
            "token_number": "",  # drawn in `_insert`
            "expiry": f"{now.year + TOKEN_VALIDITY_YEARS:04d}{now.month:02d}",
            "psn": TOKEN_PSN,
            "vault_ref": id_to_bytes(entry.ref.id),
            "par": entry.par,
            "bank_code": bank_code,
            "user_id": id_to_bytes(request.user_id),
            "device_id": request.device_id,
            "domain": domain.value,
            "state": (TokenState.INACTIVE if step_up else TokenState.ACTIVE).value,
            "suspended_by": "",
            "created_at": now_ns,
            "updated_at": now_ns,
            "_digits": digits,
        }

    def _insert(self, row: dict[str, Any], code: str | None) -> int | None:
        """Write the token (and its step-up code), drawing its number; the id of the live
        token that is in the way instead, if one is. An inactive token of the same card,
        device and domain (an earlier request left waiting) is deleted first."""
        digits = row.pop("_digits")
        token_range = self._banks.bank(row["bank_code"]).spec.token_iin_range
        for _ in range(TOKEN_NUMBER_ATTEMPTS_MAX):
            row["token_number"] = new_token_number(token_range, digits, self._randbelow)
            assert bank_for_pan(row["token_number"]) is None, "a token number is never a PAN"
            try:
                with self._write() as conn:
                    if self._number_taken(conn, row["token_number"]):
                        continue
                    live = self._live_for(conn, row)
                    if live is not None and live.state != TokenState.INACTIVE:
                        return id_from_bytes(live.id)
                    if live is not None:  # `None` (lost a race) fails the insert below
                        self._change(conn, live, TokenEvent.DELETE, Party.TOKEN_SERVICE)
                    conn.execute(sa.insert(tokens).values(row))
                    if code is not None:
                        self._count_send(conn, row)
                        conn.execute(sa.insert(token_step_ups).values(self._step_up_row(row, code)))
                    return None
            except sa.exc.IntegrityError:  # a concurrent request took the number or the slot
                continue
        raise TokenNumbersExhausted(
            f"no free token number in {token_range} after {TOKEN_NUMBER_ATTEMPTS_MAX} draws"
        )

    def _live_for(self, conn: sa.Connection, row: dict[str, Any]) -> Any:
        return conn.execute(
            sa.select(tokens).where(
                tokens.c.vault_ref == row["vault_ref"],
                tokens.c.device_id == row["device_id"],
                tokens.c.domain == row["domain"],
                tokens.c.state != TokenState.DELETED.value,
            )
        ).first()

    def _number_taken(self, conn: sa.Connection, number: str) -> bool:
        found = conn.execute(sa.select(tokens.c.id).where(tokens.c.token_number == number))
        return found.first() is not None

    def _count_send(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        """Record one more code for the card, or `_StepUpSendsExceeded` (the caller's
        transaction rolls back: no token, no code) if it had its codes for 24 hours."""
        since_ns = row["created_at"] - STEP_UP_SENDS_WINDOW_S * NS_PER_S
        sent = conn.execute(
            sa.select(sa.func.count())
            .select_from(token_step_up_sends)
            .where(
                token_step_up_sends.c.vault_ref == row["vault_ref"],
                token_step_up_sends.c.sent_at > since_ns,
            )
        ).scalar_one()
        if sent >= STEP_UP_SENDS_PER_CARD_MAX:
            raise _StepUpSendsExceeded
        send = {
            "id": id_to_bytes(self._ids.next_id()),
            "vault_ref": row["vault_ref"],
            "sent_at": row["created_at"],
        }
        conn.execute(sa.insert(token_step_up_sends).values(send))

    def _step_up_row(self, row: dict[str, Any], code: str) -> dict[str, Any]:
        return {
            "token_id": row["id"],
            "code_hash": self._code_hash(row["id"], code),
            "expires_at": row["created_at"] + STEP_UP_TTL_S * NS_PER_S,
            "attempts": 0,
            "created_at": row["created_at"],
        }

    def _code_hash(self, token_id: bytes, code: str) -> bytes:
        message = token_id + code.encode("utf-8", "surrogatepass")
        return hmac.new(self._code_key, message, hashlib.sha256).digest()

    # -- step-up ---------------------------------------------------------------------

    def confirm_step_up(self, token_id: int, code: str) -> StepUpAnswer:
        """The cardholder's code for an inactive token: right, it activates the token
        (by the token service); wrong, a try is spent, and the last wrong try deletes the
        token, as does any try once the code lapsed."""
        key = id_to_bytes(token_id)
        with self._write() as conn:
            # Locked: two tries at once must not both spend the same attempt count.
            pending = conn.execute(
                sa.select(token_step_ups).where(token_step_ups.c.token_id == key).with_for_update()
            ).first()
            row = self._row(conn, key) if pending is not None else None
            if pending is None or row is None or row.state != TokenState.INACTIVE:
                return StepUpAnswer(StepUpStatus.NOT_PENDING)
            if self._clock.now_ns() >= pending.expires_at:
                token = self._change(conn, row, TokenEvent.DELETE, Party.TOKEN_SERVICE)
                return StepUpAnswer(StepUpStatus.EXPIRED, token)
            if hmac.compare_digest(self._code_hash(key, code), pending.code_hash):
                token = self._change(conn, row, TokenEvent.ACTIVATE, Party.TOKEN_SERVICE)
                return StepUpAnswer(StepUpStatus.ACTIVATED, token)
            attempts = pending.attempts + 1
            if attempts >= STEP_UP_ATTEMPTS_MAX:
                token = self._change(conn, row, TokenEvent.DELETE, Party.TOKEN_SERVICE)
                return StepUpAnswer(StepUpStatus.ATTEMPTS_EXCEEDED, token)
            conn.execute(
                sa.update(token_step_ups)
                .where(token_step_ups.c.token_id == key)
                .values(attempts=attempts)
            )
        left = STEP_UP_ATTEMPTS_MAX - attempts
        return StepUpAnswer(StepUpStatus.CODE_WRONG, _token(row), attempts_left=left)

    def sweep_step_ups(self, limit: int = BULK_TOKENS_MAX) -> int:
        """Delete up to `limit` tokens whose step-up code lapsed unanswered (as a try
        after the lapse would), and forget the codes sent before the send window; the
        number of tokens deleted. Safe to run on every server at once."""
        assert 1 <= limit <= BULK_TOKENS_MAX
        now_ns = self._clock.now_ns()
        with self._engine.connect() as conn:
            lapsed = (
                conn.execute(
                    sa.select(token_step_ups.c.token_id)
                    .where(token_step_ups.c.expires_at <= now_ns)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        deleted = 0
        for key in lapsed:
            with self._write() as conn:
                row = self._row(conn, key)
                if row is not None and row.state == TokenState.INACTIVE:
                    deleted += (
                        self._change(conn, row, TokenEvent.DELETE, Party.TOKEN_SERVICE) is not None
                    )
        with self._write() as conn:
            cutoff_ns = now_ns - STEP_UP_SENDS_WINDOW_S * NS_PER_S
            conn.execute(
                sa.delete(token_step_up_sends).where(token_step_up_sends.c.sent_at <= cutoff_ns)
            )
        if deleted:
            log.info("%d tokens removed: their step-up codes lapsed unanswered", deleted)
        return deleted

    # -- reading ---------------------------------------------------------------------

    def token(self, token_id: int) -> Token:
        """`TokenUnknown` if there is no such token."""
        with self._engine.connect() as conn:
            row = self._row(conn, id_to_bytes(token_id))
        if row is None:
            raise TokenUnknown(f"no token {token_id:032x}")
        return _token(row)

    def tokens_of(self, user_id: int, device_id: str | None = None) -> list[Token]:
        """The user's tokens (of one device, if given), deleted ones included, oldest first."""
        query = sa.select(tokens).where(tokens.c.user_id == id_to_bytes(user_id))
        if device_id is not None:
            query = query.where(tokens.c.device_id == device_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(tokens.c.id).limit(BULK_TOKENS_MAX)).all()
        return [_token(row) for row in rows]

    # -- lifecycle -------------------------------------------------------------------

    def suspend(self, token_id: int, party: Party) -> Token:
        return self._transition(token_id, TokenEvent.SUSPEND, party)

    def resume(self, token_id: int, party: Party) -> Token:
        return self._transition(token_id, TokenEvent.RESUME, party)

    def delete(self, token_id: int, party: Party) -> Token:
        return self._transition(token_id, TokenEvent.DELETE, party)

    def _transition(self, token_id: int, event: TokenEvent, party: Party) -> Token:
        """One token's change; `TokenUnknown`, `TokenTransitionRefused` (nothing written)."""
        key = id_to_bytes(token_id)
        for _ in range(TRANSITION_ATTEMPTS_MAX):
            with self._write() as conn:
                row = self._row(conn, key)
                if row is None:
                    raise TokenUnknown(f"no token {token_id:032x}")
                token = self._change(conn, row, event, party)
            if token is not None:
                log.info("token %s: %s by the %s, now %s", token.number, event, party, token.state)
                return token
        raise TokenBusy(f"token {token_id:032x} kept changing; try again")

    def on_device_lost(self, user_id: int, device_id: str) -> BulkChange:
        """The phone is lost: every live token on it is suspended by the device (an
        inactive one, whose step-up would now reach nobody, is deleted)."""

        def event_for(row: Any) -> TokenEvent:
            inactive = row.state == TokenState.INACTIVE
            return TokenEvent.DELETE if inactive else TokenEvent.SUSPEND

        where = (tokens.c.user_id == id_to_bytes(user_id), tokens.c.device_id == device_id)
        return self._bulk(where, event_for, Party.DEVICE)

    def on_device_found(self, user_id: int, device_id: str) -> BulkChange:
        """The lost phone is back: the device's own suspension is lifted (others stay)."""
        where = (tokens.c.user_id == id_to_bytes(user_id), tokens.c.device_id == device_id)
        return self._bulk(where, lambda _row: TokenEvent.RESUME, Party.DEVICE)

    def on_device_unbound(self, user_id: int, device_id: str) -> BulkChange:
        """The phone is unbound from the user: every live token on it is deleted."""
        where = (tokens.c.user_id == id_to_bytes(user_id), tokens.c.device_id == device_id)
        return self._bulk(where, lambda _row: TokenEvent.DELETE, Party.DEVICE)

    def on_issuer_event(self, card: VaultRef | Pan | str, event: TokenEvent) -> BulkChange:
        """The issuer suspends, resumes, deletes (or, after its own ID&V, activates)
        every live token of the card. `CardNotVaulted` for a card with no tokens ever."""
        ref = self._ref_of(card)
        where = (tokens.c.vault_ref == id_to_bytes(ref.id),)
        return self._bulk(where, lambda _row: event, Party.ISSUER)

    def reissue(self, old_pan: Pan | str, new_pan: Pan | str, new_expiry: Expiry) -> VaultEntry:
        """The issuer re-issued the card: the vault keeps its reference and PAR and now
        holds the new number, so the card's tokens pay on without re-provisioning.
        `CardNotVaulted`; `PanAlreadyVaulted` if the new number is another card's."""
        ref = self._ref_of(old_pan)
        return self._vault.replace_pan(ref, new_pan, new_expiry)

    def _ref_of(self, card: VaultRef | Pan | str) -> VaultRef:
        if isinstance(card, VaultRef):
            return card
        ref = self._vault.find(card)
        if ref is None:
            masked = Pan(card).masked if isinstance(card, str) else card.masked
            raise CardNotVaulted(f"card {masked} has no tokens")
        return ref

    def _bulk(
        self,
        where: Sequence[sa.ColumnElement[bool]],
        event_for: Callable[[Any], TokenEvent],
        party: Party,
    ) -> BulkChange:
        """Apply each live token's event in one transaction; refusals are reported, not
        raised. Retried whole if a concurrent change won a compare-and-set."""
        for _ in range(TRANSITION_ATTEMPTS_MAX):
            changed: list[Token] = []
            refused: list[TokenRefusal] = []
            with self._write() as conn:
                rows = conn.execute(
                    sa.select(tokens)
                    .where(*where, tokens.c.state != TokenState.DELETED.value)
                    .order_by(tokens.c.id)
                    .limit(BULK_TOKENS_MAX + 1)
                ).all()
                assert len(rows) <= BULK_TOKENS_MAX, "more live tokens than BULK_TOKENS_MAX"
                lost = self._apply_all(conn, rows, event_for, party, changed, refused)
                if lost:
                    conn.rollback()
                    continue
            for token in changed:
                log.info("token %s: now %s (by the %s)", token.number, token.state, party)
            return BulkChange(tuple(changed), tuple(refused))
        raise TokenBusy("the tokens kept changing; try again")

    def _apply_all(
        self,
        conn: sa.Connection,
        rows: Iterable[Any],
        event_for: Callable[[Any], TokenEvent],
        party: Party,
        changed: list[Token],
        refused: list[TokenRefusal],
    ) -> bool:
        """True if a compare-and-set lost (the caller retries)."""
        for row in rows:
            try:
                token = self._change(conn, row, event_for(row), party)
            except TokenTransitionRefused as exc:
                refused.append(TokenRefusal(id_from_bytes(row.id), exc.message))
                continue
            if token is None:
                return True
            changed.append(token)
        return False

    def _change(
        self, conn: sa.Connection, row: Any, event: TokenEvent, party: Party
    ) -> Token | None:
        """Write `event` by `party` on the token `row` was read as; None if the row
        changed meanwhile (compare-and-set on state and suspensions).
        `TokenTransitionRefused` if the lifecycle rules say no."""
        after = apply(_lifecycle(row.state, row.suspended_by), event, party)
        now_ns = self._clock.now_ns()
        values = {
            "state": after.state.value,
            "suspended_by": _SEPARATOR.join(sorted(after.suspended_by)),
            "updated_at": now_ns,
        }
        done = conn.execute(
            sa.update(tokens)
            .where(
                tokens.c.id == row.id,
                tokens.c.state == row.state,
                tokens.c.suspended_by == row.suspended_by,
            )
            .values(values)
        )
        if done.rowcount != 1:
            return None
        if after.state in (TokenState.ACTIVE, TokenState.DELETED):
            conn.execute(sa.delete(token_step_ups).where(token_step_ups.c.token_id == row.id))
        return _token({**row._asdict(), **values})

    # -- storage ---------------------------------------------------------------------

    def _row(self, conn: sa.Connection, key: bytes) -> Any:
        return conn.execute(_TOKEN_BY_ID, {"the_token": key}).first()

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return write_transaction(self._engine)


#: Built once: the switch reads a token by id on every tap.
_TOKEN_BY_ID: Final = sa.select(tokens).where(tokens.c.id == sa.bindparam("the_token"))


class _StepUpSendsExceeded(Exception):
    """Inside `_insert`: the card had its codes; roll the token back."""


def _declined(code: DeclineCode, reason: str = "") -> ProvisionAnswer:
    return ProvisionAnswer(ProvisionOutcome.DECLINED, decline=code, reason=reason)


def _check_device_id(device_id: str) -> None:
    if not (
        isinstance(device_id, str)
        and 1 <= len(device_id) <= DEVICE_ID_CHARS_MAX
        and device_id.isascii()
        and device_id.isprintable()
    ):
        raise TokenRequestInvalid(
            f"a device id is 1 to {DEVICE_ID_CHARS_MAX} printable ASCII characters"
        )


def _step_up_text(code: str, bank_name: str) -> str:
    return (
        f"{bank_name}: {code} is your code to add your card to Millet Pay. It expires in "
        f"{STEP_UP_TTL_S // 60} minutes. If you did not ask for it, call your bank."
    )


def _lifecycle(state: str, suspended_by: str) -> Lifecycle:
    holders = suspended_by.split(_SEPARATOR) if suspended_by else []
    return Lifecycle(TokenState(state), frozenset(Party(p) for p in holders))


def _token(row: Any) -> Token:
    values = row if isinstance(row, dict) else row._asdict()
    expiry = values["expiry"]
    return Token(
        id=id_from_bytes(values["id"]),
        number=values["token_number"],
        expiry=Expiry(int(expiry[:4]), int(expiry[4:])),
        psn=int(values["psn"]),
        vault_ref=VaultRef(id_from_bytes(values["vault_ref"])),
        par=values["par"],
        bank_code=values["bank_code"],
        user_id=id_from_bytes(values["user_id"]),
        device_id=values["device_id"],
        domain=TokenDomain(values["domain"]),
        lifecycle=_lifecycle(values["state"], values["suspended_by"]),
        created_at_ns=int(values["created_at"]),
        updated_at_ns=int(values["updated_at"]),
    )
