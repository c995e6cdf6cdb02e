"""User endpoints: registration, sign-in by one-time code, KYC steps, PIN, devices.

Every path under /v1/me acts on the signed-in user only: there is no user id in those
paths, so no request can name another user's data.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.api.sessions import Session, SessionTokens
from milletpay.cards.tsp import TokenService
from milletpay.identity import IdentityService, OtpPurpose, OtpStatus, PinStatus, User
from milletpay.identity.devices import DeviceRegistry

router = APIRouter(prefix="/v1")


# The dependencies are `async def` because they never block: FastAPI runs them on the
# event loop, where a plain `def` would cost a trip to a worker thread each.


async def identity(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


async def devices(request: Request) -> DeviceRegistry:
    registry: DeviceRegistry = request.app.state.devices
    return registry


async def session(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Session:
    tokens: SessionTokens = request.app.state.sessions
    return tokens.check(authorization)


Identity = Annotated[IdentityService, Depends(identity)]
Devices = Annotated[DeviceRegistry, Depends(devices)]
SignedIn = Annotated[Session, Depends(session)]


class Registration(BaseModel):
    phone: str = Field(min_length=1, max_length=32, examples=["+86 138 0013 8000"])
    real_name: str = Field(min_length=1, max_length=64)
    national_id: str = Field(min_length=1, max_length=32)


class PhoneOnly(BaseModel):
    phone: str = Field(min_length=1, max_length=32)


class SignIn(BaseModel):
    phone: str = Field(min_length=1, max_length=32)
    code: str = Field(min_length=1, max_length=12)


class ChannelStep(BaseModel):
    channel: str = Field(min_length=1, max_length=40, examples=["bank_card"])


class PinBody(BaseModel):
    pin: str = Field(min_length=1, max_length=12)


class BindingStart(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)


class BindingFinish(BaseModel):
    credential: dict[str, Any]


def _user_json(user: User, service: IdentityService) -> dict[str, Any]:
    tier = service.current_tier(user.id)
    return {
        "id": f"{user.id:032x}",
        "phone": user.phone,
        "real_name": user.real_name,
        "national_id": user.national_id_masked,
        "kyc_tier": tier.name if tier is not None else None,
        "verified_channels": sorted(str(c) for c in service.verified_channels(user.id)),
    }


@router.post("/users", status_code=201, tags=["users"])
def register(body: Registration, service: Identity) -> dict[str, Any]:
    """Register with phone number, real name and resident ID number."""
    user = service.register(body.phone, body.real_name, body.national_id)
    return _user_json(user, service)


@router.post("/sessions/codes", status_code=202, tags=["sessions"])
def send_sign_in_code(body: PhoneOnly, service: Identity) -> dict[str, str]:
    """Text a sign-in code to a registered phone (the answer is the same for any phone)."""
    user = service.find_by_phone(body.phone)
    if user is not None:
        service.send_otp(user.id, OtpPurpose.LOGIN)
    return {"status": "sent_if_registered"}


@router.post("/sessions", status_code=201, tags=["sessions"])
def sign_in(body: SignIn, request: Request, service: Identity) -> dict[str, Any]:
    """Exchange the texted code for a short-lived bearer token."""
    user = service.find_by_phone(body.phone)
    status = (
        OtpStatus.NOT_FOUND
        if user is None
        else service.verify_otp(user.id, OtpPurpose.LOGIN, body.code)
    )
    if user is None or status is not OtpStatus.OK:
        raise ApiError(401, str(status), "the code is wrong, used or expired", "code")
    tokens: SessionTokens = request.app.state.sessions
    token, issued = tokens.issue(user.id)
    return {"token": token, "token_type": "bearer", "expires_at_ns": issued.expires_at_ns}


@router.get("/me", tags=["users"])
def me(signed_in: SignedIn, service: Identity) -> dict[str, Any]:
    """The signed-in user, with KYC tier and verified channels."""
    return _user_json(service.get_user(signed_in.user_id), service)


@router.post("/me/kyc/channels", status_code=201, tags=["users"])
def verify_channel(body: ChannelStep, signed_in: SignedIn, service: Identity) -> dict[str, Any]:
    """Record one verified external channel (the verification itself is the channel's)."""
    service.verify_channel(signed_in.user_id, body.channel)
    return _user_json(service.get_user(signed_in.user_id), service)


@router.put("/me/pin", status_code=204, tags=["users"])
def set_pin(body: PinBody, signed_in: SignedIn, service: Identity) -> None:
    """Set the 6-digit payment PIN (once; a forgotten PIN is reset with a texted code)."""
    service.set_pin(signed_in.user_id, body.pin)


@router.post("/me/pin/checks", tags=["users"])
def check_pin(body: PinBody, signed_in: SignedIn, service: Identity) -> dict[str, Any]:
    """Check the PIN: `ok`, `pin_wrong` with tries left, `pin_locked` or `pin_not_set`."""
    check = service.check_pin(signed_in.user_id, body.pin)
    if check.status is not PinStatus.OK:
        raise ApiError(
            403 if check.status is PinStatus.LOCKED else 400,
            str(check.status),
            f"PIN check: {check.status} ({check.tries_left} tries left)",
            "pin",
        )
    return {"status": str(check.status), "tries_left": check.tries_left}


@router.post("/me/devices/bindings", status_code=201, tags=["devices"])
def begin_binding(body: BindingStart, signed_in: SignedIn, registry: Devices) -> Any:
    """WebAuthn registration options for the phone's platform authenticator."""
    return json.loads(registry.begin_binding(signed_in.user_id, body.device_id, body.model))


@router.post("/me/devices", status_code=201, tags=["devices"])
def finish_binding(body: BindingFinish, signed_in: SignedIn, registry: Devices) -> Any:
    """Bind the phone with its WebAuthn registration response."""
    device = registry.finish_binding(signed_in.user_id, json.dumps(body.credential))
    return _device_json(device)


@router.get("/me/devices", tags=["devices"])
def list_devices(signed_in: SignedIn, registry: Devices) -> list[dict[str, Any]]:
    return [_device_json(d) for d in registry.list_devices(signed_in.user_id)]


@router.delete("/me/devices/{device_id}", tags=["devices"])
def unbind(device_id: str, request: Request, signed_in: SignedIn, registry: Devices) -> Any:
    """Unbind a phone: its keys approve nothing from now on, and the card tokens on it
    are deleted (first, so that a failure in between leaves no token on an unbound
    phone)."""
    require_own_device(registry, signed_in.user_id, device_id)
    tsp: TokenService = request.app.state.tsp
    deleted = tsp.on_device_unbound(signed_in.user_id, device_id)
    answer = _device_json(registry.unbind(signed_in.user_id, device_id))
    answer["tokens_deleted"] = len(deleted.changed)
    return answer


@router.post("/me/devices/{device_id}/loss", tags=["devices"])
def report_lost(device_id: str, request: Request, signed_in: SignedIn, registry: Devices) -> Any:
    """The phone is lost: every card token on it is suspended until it is found (an
    issuer's or the cardholder's own suspension stays as it is)."""
    require_own_device(registry, signed_in.user_id, device_id)
    tsp: TokenService = request.app.state.tsp
    suspended = tsp.on_device_lost(signed_in.user_id, device_id)
    return {"device_id": device_id, "tokens_suspended": len(suspended.changed)}


@router.delete("/me/devices/{device_id}/loss", tags=["devices"])
def report_found(device_id: str, request: Request, signed_in: SignedIn, registry: Devices) -> Any:
    """The lost phone is back: the device's suspension of its tokens is lifted."""
    require_own_device(registry, signed_in.user_id, device_id)
    tsp: TokenService = request.app.state.tsp
    resumed = tsp.on_device_found(signed_in.user_id, device_id)
    return {"device_id": device_id, "tokens_resumed": len(resumed.changed)}


def require_own_device(registry: DeviceRegistry, user_id: int, device_id: str) -> None:
    """404 unless `device_id` is one of the user's bound phones (for every endpoint
    that names a phone: devices, cards)."""
    if not any(d.device_id == device_id for d in registry.list_devices(user_id)):
        raise ApiError(404, "device_not_found", f"no bound device {device_id!r}", "device_id")


def _device_json(device: Any) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "model": device.model,
        "status": str(device.status),
    }
