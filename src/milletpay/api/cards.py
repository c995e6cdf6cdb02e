"""Card endpoints: the phone adds a bank card as a token, confirms a step-up, lists its
cards (masked), suspends, resumes and deletes a token, and picks the default card.

Everything goes through the `TokenService`: the phone seals the card to the TSP's key
(`GET /v1/me/cards/tsp-key`, `envelope.seal_card_for_tsp`), so the card number never
crosses this layer in clear, and a card is shown only as the vault's mask and the
token's last four digits. Every path is under /v1/me: a token id that is not the
signed-in user's is 404, exactly like one that does not exist.

A decline is an answer, not a failure: 402 with the token service's stable code (and the
issuer's reason for a red ID&V); a token already live for the card, device and domain
is 409 `token_exists`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.api.sessions import Session
from milletpay.api.users import Devices, Identity, SignedIn, require_own_device
from milletpay.banks import Banks
from milletpay.cards import (
    ENVELOPE_CHARS_MAX,
    CardEnvelopeInvalid,
    Cvn2Invalid,
    DeclineCode,
    ExpiryInvalid,
    PanInvalid,
    PanVault,
    Party,
    PhoneKeyInvalid,
    ProvisionOutcome,
    ProvisionRequest,
    StepUpStatus,
    Token,
    TokenBusy,
    TokenDomain,
    TokenService,
    TokenState,
    TokenUnknown,
    phone_key_point,
    seal_for_phone,
)
from milletpay.cards.luk import (
    LimitedUseKeys,
    LukAtcSpaceExhausted,
    LukGrantsExceeded,
    TokenNotActive,
)
from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.store.engine import write_transaction

router = APIRouter(prefix="/v1/me/cards", tags=["cards"])

_HEX_ID: Final = re.compile(r"^[0-9a-f]{32}$")
TOKEN_LAST_DIGITS: Final = 4
STEP_UP_CODE_CHARS_MAX: Final = 12
#: base64url of a 65-byte point is 87 characters; a little room for padding.
PHONE_KEY_CHARS_MAX: Final = 100
#: Why no limited-use key is granted: the card is not active or expired, too many keys
#: lately, or its ATCs are used up (add the card again).
_GRANT_REFUSALS: Final = (TokenNotActive, LukGrantsExceeded, LukAtcSpaceExhausted, TokenBusy)

#: The user's default card (migration `0010_default_card.py`): one row per user.
default_cards = sa.table(
    "default_cards",
    sa.column("user_id", sa.LargeBinary()),
    sa.column("token_id", sa.LargeBinary()),
    sa.column("updated_at", sa.BigInteger()),
)

#: A decline that is not the issuer's or the card's: the card is there already (409), or
#: it had its step-up codes for today (429).
_DECLINE_STATUS: Final = {DeclineCode.TOKEN_EXISTS: 409, DeclineCode.STEP_UP_LIMIT: 429}

#: What the envelope may hold wrong once it opens: input to fix, nothing stored.
_ENVELOPE_ERRORS: Final = (CardEnvelopeInvalid, PanInvalid, ExpiryInvalid, Cvn2Invalid)

#: A step-up that did not activate the token -> (status, message).
_STEP_UP_REFUSALS: Final[dict[StepUpStatus, tuple[int, str]]] = {
    StepUpStatus.CODE_WRONG: (400, "the code is wrong"),
    StepUpStatus.EXPIRED: (410, "the code lapsed: the card was removed; add it again"),
    StepUpStatus.ATTEMPTS_EXCEEDED: (410, "too many wrong codes: the card was removed"),
    StepUpStatus.NOT_PENDING: (409, "this card is not waiting for a code"),
}


async def token_service(request: Request) -> TokenService:
    service: TokenService = request.app.state.tsp
    return service


async def limited_use_keys(request: Request) -> LimitedUseKeys:
    luks: LimitedUseKeys = request.app.state.luks
    return luks


async def pan_vault(request: Request) -> PanVault:
    vault: PanVault = request.app.state.vault
    return vault


async def platform_engine(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


async def partner_banks(request: Request) -> Banks:
    banks: Banks = request.app.state.banks
    return banks


Tsp = Annotated[TokenService, Depends(token_service)]
Vault = Annotated[PanVault, Depends(pan_vault)]
PartnerBanks = Annotated[Banks, Depends(partner_banks)]
Database = Annotated[sa.Engine, Depends(platform_engine)]
Luks = Annotated[LimitedUseKeys, Depends(limited_use_keys)]


class CardRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    domain: Literal["contactless", "in_app", "ecommerce"]
    envelope: str = Field(min_length=1, max_length=ENVELOPE_CHARS_MAX)


class StepUpCode(BaseModel):
    code: str = Field(min_length=1, max_length=STEP_UP_CODE_CHARS_MAX)


class KeyRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    public_key: str = Field(min_length=1, max_length=PHONE_KEY_CHARS_MAX)


class DefaultCard(BaseModel):
    token_id: str = Field(min_length=1, max_length=64)


# -- handlers ---------------------------------------------------------------------------


@router.get("/tsp-key")
def tsp_key(_signed_in: SignedIn, tsp: Tsp) -> dict[str, str]:
    """The key the phone seals the card to: an uncompressed P-256 point, base64url."""
    key = base64.urlsafe_b64encode(tsp.public_key()).rstrip(b"=").decode("ascii")
    return {"algorithm": "ECDH-ES+A256GCM", "curve": "P-256", "public_key": key}


@router.post("", status_code=201)
def add_card(
    body: CardRequest,
    signed_in: SignedIn,
    identity: Identity,
    devices: Devices,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
) -> JSONResponse:
    """Add the sealed card as a token for one of the user's bound phones: 201 active,
    202 waiting for the code texted to the phone on file, 402 declined."""
    user_id = signed_in.user_id
    require_own_device(devices, user_id, body.device_id)
    phone = identity.get_user(user_id).phone
    request = ProvisionRequest(
        user_id, body.device_id, TokenDomain(body.domain), phone, body.envelope
    )
    try:
        answer = tsp.provision(request)
    except _ENVELOPE_ERRORS as error:
        raise ApiError(422, error.code, error.message, "envelope") from None
    if answer.outcome is ProvisionOutcome.DECLINED:
        return _decline(answer.decline, answer.reason)
    assert answer.token is not None
    card = _card_json(answer.token, vault, banks, default_id=None)
    if answer.outcome is ProvisionOutcome.APPROVED:
        return JSONResponse(card, status_code=201)
    step_up = {"channel": str(answer.step_up), "phone_masked": answer.phone_masked}
    return JSONResponse({**card, "step_up": step_up}, status_code=202)


@router.post("/{token_id}/step-up")
def confirm_step_up(
    token_id: str,
    body: StepUpCode,
    signed_in: SignedIn,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
    engine: Database,
) -> dict[str, Any]:
    """The code texted to the phone on file: right, the card is active."""
    token = _own_token(tsp, signed_in.user_id, token_id)
    answer = tsp.confirm_step_up(token.id, body.code)
    if answer.status is StepUpStatus.ACTIVATED:
        assert answer.token is not None
        return _card(answer.token, signed_in, vault, banks, engine)
    status, message = _STEP_UP_REFUSALS[answer.status]
    if answer.status is StepUpStatus.CODE_WRONG:
        message = f"{message}; {answer.attempts_left} tries left"
    raise ApiError(status, str(answer.status), message, "code")


@router.post("/{token_id}/keys", status_code=201)
def grant_keys(
    token_id: str,
    body: KeyRequest,
    signed_in: SignedIn,
    devices: Devices,
    tsp: Tsp,
    luks: Luks,
) -> dict[str, Any]:
    """A new limited-use key for the phone that holds the card, sealed to the one-time
    P-256 key the phone sends (`public_key`, base64url of the uncompressed point): the
    key, the token number, its expiry and PSN open only on that phone. The key before is
    retired at once, so a retry simply replaces it. 409 when the card is not active."""
    user_id = signed_in.user_id
    token = _own_token(tsp, user_id, token_id)
    require_own_device(devices, user_id, body.device_id)
    if token.device_id != body.device_id:
        raise ApiError(403, "device_mismatch", "the card is on another phone", "device_id")
    try:
        point = phone_key_point(_unb64url(body.public_key))
    except PhoneKeyInvalid as error:
        raise ApiError(422, error.code, error.message, "public_key") from None
    try:
        grant = luks.issue(token)
    except _GRANT_REFUSALS as error:
        status = 429 if isinstance(error, LukGrantsExceeded) else 409
        raise ApiError(status, error.code, error.message) from None
    sealed = seal_for_phone(
        point,
        {
            "luk": grant.key.hex().upper(),
            "token_number": grant.token_number,
            "token_expiry": str(token.expiry),
            "psn": token.psn,
        },
    )
    return {
        "token_id": f"{token.id:032x}",
        "luk_index": grant.luk_index,
        "profile": grant.profile,
        "atc_first": grant.atc_first,
        "atc_last": grant.atc_last,
        "uses_max": grant.uses_max,
        "issued_at_ns": grant.issued_at_ns,
        "expires_at_ns": grant.expires_at_ns,
        "sealed": sealed,
    }


@router.get("")
def list_cards(
    signed_in: SignedIn, tsp: Tsp, vault: Vault, banks: PartnerBanks, engine: Database
) -> dict[str, Any]:
    """The user's cards that are not deleted, oldest first, masked."""
    user_id = signed_in.user_id
    default_id = _default_id(engine, user_id)
    live = [t for t in tsp.tokens_of(user_id) if t.state is not TokenState.DELETED]
    masks: dict[int, str] = {}
    return {"items": [_card_json(t, vault, banks, default_id, masks) for t in live]}


@router.post("/{token_id}/suspension")
def suspend(
    token_id: str,
    signed_in: SignedIn,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
    engine: Database,
) -> dict[str, Any]:
    """Suspend the card (the cardholder's own suspension; others' stay)."""
    token = _own_token(tsp, signed_in.user_id, token_id)
    return _card(tsp.suspend(token.id, Party.CARDHOLDER), signed_in, vault, banks, engine)


@router.delete("/{token_id}/suspension")
def resume(
    token_id: str,
    signed_in: SignedIn,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
    engine: Database,
) -> dict[str, Any]:
    """Lift the cardholder's suspension: active again unless the bank or a lost phone
    holds one too."""
    token = _own_token(tsp, signed_in.user_id, token_id)
    return _card(tsp.resume(token.id, Party.CARDHOLDER), signed_in, vault, banks, engine)


@router.delete("/{token_id}")
def delete(
    token_id: str,
    signed_in: SignedIn,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
    engine: Database,
) -> dict[str, Any]:
    """Remove the card from the phone: the token is deleted for good."""
    token = _own_token(tsp, signed_in.user_id, token_id)
    changed = tsp.delete(token.id, Party.CARDHOLDER)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.delete(default_cards).where(
                default_cards.c.user_id == id_to_bytes(signed_in.user_id),
                default_cards.c.token_id == id_to_bytes(token.id),
            )
        )
    return _card_json(changed, vault, banks, default_id=None)


@router.put("/default")
def set_default(
    body: DefaultCard,
    request: Request,
    signed_in: SignedIn,
    tsp: Tsp,
    vault: Vault,
    banks: PartnerBanks,
    engine: Database,
) -> dict[str, Any]:
    """Make an active card the one the phone pays with unless told otherwise."""
    user_id = signed_in.user_id
    token = _own_token(tsp, user_id, body.token_id, field="token_id")
    if token.state is not TokenState.ACTIVE:
        raise ApiError(409, "card_not_active", f"the card is {token.state}", "token_id")
    user_key = id_to_bytes(user_id)
    row = {
        "user_id": user_key,
        "token_id": id_to_bytes(token.id),
        "updated_at": request.app.state.clock.now_ns(),
    }
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(default_cards).where(default_cards.c.user_id == user_key))
        conn.execute(sa.insert(default_cards).values(row))
    return _card_json(token, vault, banks, default_id=token.id)


# -- helpers ----------------------------------------------------------------------------


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        message = "public_key is not base64url"
        raise ApiError(422, "phone_key_invalid", message, "public_key") from None


def _own_token(tsp: TokenService, user_id: int, text: str, field: str | None = None) -> Token:
    """The user's token with id `text`; 404 for a malformed, unknown or foreign id alike."""
    missing = ApiError(404, "token_not_found", "no such card", field)
    if not _HEX_ID.fullmatch(text):
        raise missing
    try:
        token = tsp.token(int(text, 16))
    except TokenUnknown:
        raise missing from None
    if token.user_id != user_id:
        raise missing
    return token


def _card(
    token: Token, signed_in: Session, vault: PanVault, banks: Banks, engine: sa.Engine
) -> dict[str, Any]:
    """The card as the signed-in user sees it, their default marked."""
    return _card_json(token, vault, banks, _default_id(engine, signed_in.user_id))


def _default_id(engine: sa.Engine, user_id: int) -> int | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(default_cards.c.token_id).where(
                default_cards.c.user_id == id_to_bytes(user_id)
            )
        ).scalar_one_or_none()
    return None if found is None else id_from_bytes(found)


def _card_json(
    token: Token,
    vault: PanVault,
    banks: Banks,
    default_id: int | None,
    masks: dict[int, str] | None = None,
) -> dict[str, Any]:
    masks = {} if masks is None else masks
    ref = token.vault_ref
    if ref.id not in masks:
        masks[ref.id] = vault.masked(ref)
    live = token.state is not TokenState.DELETED
    return {
        "id": f"{token.id:032x}",
        "card_masked": masks[ref.id],
        "bank_code": token.bank_code,
        "bank_name": banks.bank(token.bank_code).spec.name,
        "token_last4": token.number[-TOKEN_LAST_DIGITS:],
        "token_expiry": str(token.expiry),
        "domain": str(token.domain),
        "device_id": token.device_id,
        "state": str(token.state),
        "suspended_by": sorted(str(p) for p in token.lifecycle.suspended_by),
        "default": live and token.id == default_id,
    }


def _decline(code: DeclineCode | None, reason: str) -> JSONResponse:
    assert code is not None
    status = _DECLINE_STATUS.get(code, 402)
    message = f"declined: {code}" + (f" ({reason})" if reason else "")
    error: dict[str, Any] = {"code": str(code), "message": message, "field": "envelope"}
    if reason:
        error["reason"] = reason
    return JSONResponse({"error": error}, status_code=status)
