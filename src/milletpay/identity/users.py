"""`IdentityService`: users, their real-name verifications and KYC tier, PIN and OTP.

It owns the identity tables and nothing else: it moves no money and knows no wallet.
The national ID number and the real name are sealed with the key ring before they reach
the database; the clear ID number never leaves `register`, and is never logged.
"""

from __future__ import annotations

import hmac
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import sqlalchemy as sa

from milletpay.core.clock import NS_PER_S, Clock, SystemClock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.identity import national_id, otp, pin
from milletpay.identity.errors import (
    ChannelUnknown,
    ClassIIIAlreadyHeld,
    OtpPurposeUnknown,
    OtpRateLimited,
    PhoneTaken,
    PinAlreadySet,
    RealNameInvalid,
    UserNotFound,
)
from milletpay.identity.kyc import CLASS_III, Channel, KycTier, tier_of_channels
from milletpay.identity.phone import mask_phone, normalize_phone
from milletpay.identity.tables import kyc_verifications, otps, pins, user_key, users
from milletpay.store import create_engine, upgrade
from milletpay.store.engine import read_transaction, write_transaction
from milletpay.store.sql import Sql

REAL_NAME_CHARS_MAX = 64
_AAD_REAL_NAME = b"users.real_name|"
_AAD_NATIONAL_ID = b"users.national_id|"
# Read for every payment:
_USER_BY_PHONE = Sql("SELECT id FROM users WHERE phone = :phone")
_USER_PHONE = Sql("SELECT phone FROM users WHERE id = :id")
_USER_PHONE_FOR_UPDATE = Sql("SELECT phone FROM users WHERE id = :id FOR UPDATE")
_USER_PIN = Sql(
    "SELECT p.pin_hash, p.locked_at FROM users u LEFT JOIN pins p ON p.user_id = u.id "
    "WHERE u.id = :id"
)
_CHANNELS = Sql("SELECT channel FROM kyc_verifications WHERE user_id = :user")
#: The user (a row even without channels: NULL) and the channels verified.
_USER_CHANNELS = Sql(
    "SELECT u.id, k.channel FROM users u LEFT JOIN kyc_verifications k ON k.user_id = u.id "
    "WHERE u.id = :user"
)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    phone: str
    real_name: str
    national_id_masked: str
    created_at_ns: int


class IdentityService:
    """Registration, KYC channels and tier, payment PIN and one-time codes; thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        keyring: KeyRing,
        clock: Clock,
        sms: otp.SmsChannel,
        *,
        pin_hashing: pin.PinHashing | None = None,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._clock = clock
        self._sms = sms
        self._ids = IdGenerator(clock)
        self._pin_hasher = (pin_hashing or pin.PinHashing()).hasher()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        sms: otp.SmsChannel,
        keyring: KeyRing | None = None,
        clock: Clock | None = None,
        pin_hashing: pin.PinHashing | None = None,
    ) -> IdentityService:
        """A service on the database at `url`, migrated to the newest schema."""
        engine = create_engine(url)
        upgrade(engine)
        return cls(
            engine,
            keyring or KeyRing.from_environment(),
            clock or SystemClock(),
            sms,
            pin_hashing=pin_hashing,
        )

    def close(self) -> None:
        self._engine.dispose()

    # -- users ----------------------------------------------------------------------

    def register(self, phone: str, real_name: str, national_id_number: str) -> User:
        """A new user; `PhoneInvalid`, `RealNameInvalid`, `NationalIdInvalid`, `PhoneTaken`."""
        phone = normalize_phone(phone)
        real_name = _validate_real_name(real_name)
        number = national_id.validate(national_id_number)
        user_id = self._ids.next_id()
        key = id_to_bytes(user_id)
        now_ns = self._clock.now_ns()
        row = {
            "id": key,
            "phone": phone,
            "real_name_sealed": self._keyring.seal(real_name.encode(), _AAD_REAL_NAME + key),
            "national_id_sealed": self._keyring.seal(number.encode(), _AAD_NATIONAL_ID + key),
            "national_id_masked": national_id.mask(number),
            "national_id_fingerprint": national_id.fingerprint(self._keyring, number),
            "class_iii_fingerprint": None,
            "created_at": now_ns,
        }
        try:
            with self._write() as conn:
                conn.execute(sa.insert(users).values(row))
        except sa.exc.IntegrityError:
            raise PhoneTaken(f"phone number {mask_phone(phone)} is already registered") from None
        return User(user_id, phone, real_name, national_id.mask(number), now_ns)

    def get_user(self, user_id: int, *, conn: sa.Connection | None = None) -> User:
        """The user; `UserNotFound`. `conn`: read in the caller's transaction."""
        with self._read(conn) as conn:
            row = conn.execute(
                sa.select(users).where(users.c.id == user_key(user_id))
            ).one_or_none()
        if row is None:
            raise UserNotFound(f"no user {user_id:032x}")
        name = self._keyring.open(row.real_name_sealed, _AAD_REAL_NAME + row.id)
        return User(user_id, row.phone, name.decode(), row.national_id_masked, row.created_at)

    def find_by_phone(self, phone: str, *, conn: sa.Connection | None = None) -> User | None:
        """The user registered with this phone number, if any (`PhoneInvalid` if malformed)."""
        normalized = normalize_phone(phone)
        with self._read(conn) as c:
            row = c.execute(sa.select(users.c.id).where(users.c.phone == normalized)).first()
            return None if row is None else self.get_user(id_from_bytes(row.id), conn=c)

    def user_id_by_phone(self, phone: str, *, conn: sa.Connection | None = None) -> int | None:
        """The id of the user registered with this phone number, if any."""
        normalized = normalize_phone(phone)
        with self._read(conn) as c:
            row = _USER_BY_PHONE.run(c, phone=normalized).first()
        return None if row is None else id_from_bytes(row[0])

    def national_id_of(self, user_id: int) -> str:
        """The clear ID number, for a counterparty that must receive it (bank card binding)."""
        with self._read() as conn:
            sealed = conn.execute(
                sa.select(users.c.national_id_sealed).where(users.c.id == user_key(user_id))
            ).scalar_one_or_none()
        if sealed is None:
            raise UserNotFound(f"no user {user_id:032x}")
        return self._keyring.open(sealed, _AAD_NATIONAL_ID + user_key(user_id)).decode()

    # -- KYC ------------------------------------------------------------------------

    def verify_channel(self, user_id: int, channel: Channel | str) -> KycTier | None:
        """Record that `channel` verified the user (once per channel); the tier reached.

        Reaching Class III claims the one Class III account of the user's ID number:
        `ClassIIIAlreadyHeld` if another user holds it, and then nothing is recorded.
        """
        chosen = _channel(channel)
        try:
            with self._write() as conn:
                return self._record_channel(conn, user_key(user_id), chosen)
        except sa.exc.IntegrityError:  # a concurrent claim won the unique index
            raise _class_iii_held() from None

    def _record_channel(self, conn: sa.Connection, key: bytes, channel: Channel) -> KycTier | None:
        user = conn.execute(
            sa.select(users.c.national_id_fingerprint, users.c.class_iii_fingerprint)
            .where(users.c.id == key)
            .with_for_update()
        ).one_or_none()
        if user is None:
            raise UserNotFound(f"no user {int.from_bytes(key, 'big'):032x}")
        channels = _channels(conn, key)
        if channel in channels:
            return tier_of_channels(channels)
        now_ns = self._clock.now_ns()
        conn.execute(
            sa.insert(kyc_verifications).values(user_id=key, channel=channel, verified_at=now_ns)
        )
        tier = tier_of_channels(channels | {channel})
        if tier is CLASS_III and user.class_iii_fingerprint is None:
            holder = conn.execute(
                sa.select(users.c.id).where(
                    users.c.class_iii_fingerprint == user.national_id_fingerprint
                )
            ).first()
            if holder is not None:
                raise _class_iii_held()
            conn.execute(
                sa.update(users)
                .where(users.c.id == key)
                .values(class_iii_fingerprint=user.national_id_fingerprint)
            )
        return tier

    def verified_channels(
        self, user_id: int, *, conn: sa.Connection | None = None
    ) -> frozenset[Channel]:
        with self._read(conn) as conn:
            rows = _USER_CHANNELS.run(conn, user=user_key(user_id)).all()
        if not rows:
            raise UserNotFound(f"no user {user_id:032x}")
        return frozenset(Channel(row.channel) for row in rows if row.channel is not None)

    def current_tier(self, user_id: int, *, conn: sa.Connection | None = None) -> KycTier | None:
        """The user's KYC tier from the channels verified so far; None below Class I."""
        return tier_of_channels(self.verified_channels(user_id, conn=conn))

    # -- payment PIN ----------------------------------------------------------------

    def set_pin(self, user_id: int, new_pin: str) -> None:
        """Set the first PIN; `PinAlreadySet` if there is one (change it by OTP reset)."""
        pin_hash = self._pin_hasher.hash(pin.validate_pin(new_pin))
        key = user_key(user_id)
        with self._write() as conn:
            self._require_user(conn, key)
            exists = conn.execute(sa.select(pins.c.user_id).where(pins.c.user_id == key)).first()
            if exists is not None:
                raise PinAlreadySet("the payment PIN is set; reset it with a one-time code")
            pin.store_pin(conn, key, pin_hash, self._clock.now_ns())

    def check_pin(self, user_id: int, attempt: str) -> pin.PinCheck:
        """`ok`, `pin_wrong` (with tries left), `pin_locked` or `pin_not_set`."""
        tried = self.try_pin(user_id, attempt)
        if tried.pin_hash is None:
            return tried.check
        with self._write() as conn:
            return self.confirm_pin(conn, user_id, tried)

    def try_pin(self, user_id: int, attempt: str) -> pin.PinTry:
        """Compare `attempt` with the PIN, outside any write transaction (the hash is slow
        on purpose). A wrong try is counted at once; a right one must still be confirmed by
        `confirm_pin`, in the transaction of what it approves."""
        key = user_key(user_id)
        with self._read() as conn:
            row = _USER_PIN.run(conn, id=key).one_or_none()
        if row is None:
            raise UserNotFound(f"no user {user_id:032x}")
        if row.pin_hash is None:
            return pin.PinTry(pin.PinCheck(pin.PinStatus.NOT_SET, 0))
        if row.locked_at is not None:
            return pin.PinTry(pin.PinCheck(pin.PinStatus.LOCKED, 0))
        if not pin.hash_matches(self._pin_hasher, row.pin_hash, attempt):
            with self._write() as conn:
                return pin.PinTry(
                    pin.record_wrong_try(conn, key, row.pin_hash, self._clock.now_ns())
                )
        rehash = (  # the cost was raised since the PIN was set
            self._pin_hasher.hash(attempt)
            if self._pin_hasher.check_needs_rehash(row.pin_hash)
            else None
        )
        return pin.PinTry(pin.PinCheck(pin.PinStatus.OK, pin.PIN_TRIES_MAX), row.pin_hash, rehash)

    def confirm_pin(self, conn: sa.Connection, user_id: int, tried: pin.PinTry) -> pin.PinCheck:
        """Count a right try of `try_pin` in the caller's write transaction: `ok`, or
        `pin_locked` if the PIN was locked or reset since the try."""
        if tried.pin_hash is None:
            return tried.check
        key = user_key(user_id)
        if not pin.record_right_try(conn, key, tried.pin_hash):
            return pin.PinCheck(pin.PinStatus.LOCKED, 0)
        if tried.rehash is not None:
            pin.replace_hash(conn, key, tried.pin_hash, tried.rehash)
        return tried.check

    def request_pin_reset(self, user_id: int) -> None:
        """Send a `pin_reset` one-time code to the user's phone."""
        self.send_otp(user_id, otp.OtpPurpose.PIN_RESET)

    def reset_pin(self, user_id: int, code: str, new_pin: str) -> otp.OtpStatus:
        """Replace the PIN and lift a lock if `code` is the user's live `pin_reset` code.

        The new PIN is checked first (a bad one raises and spends no try of the code);
        any answer but `ok` leaves the PIN as it was.
        """
        pin_hash = self._pin_hasher.hash(pin.validate_pin(new_pin))
        key = user_key(user_id)
        with self._write() as conn:
            status = self._use_otp(conn, key, otp.OtpPurpose.PIN_RESET, code)
            if status is otp.OtpStatus.OK:
                pin.store_pin(conn, key, pin_hash, self._clock.now_ns())
        return status

    # -- one-time codes -------------------------------------------------------------

    def send_otp(self, user_id: int, purpose: otp.OtpPurpose | str) -> None:
        """Make a new code for `purpose` (replacing older ones) and text it to the user."""
        chosen = _purpose(purpose)
        key = user_key(user_id)
        code = otp.new_code()
        otp_key = user_key(self._ids.next_id())
        now_ns = self._clock.now_ns()
        with self._write() as conn:
            phone = self._require_user(conn, key)
            self._check_otp_rate(conn, key, chosen, now_ns)
            conn.execute(
                sa.insert(otps).values(
                    id=otp_key,
                    user_id=key,
                    purpose=chosen,
                    code_hash=otp.code_hash(self._keyring, otp_key, code),
                    created_at=now_ns,
                    expires_at=otp.expires_at(now_ns),
                    attempts=0,
                    used_at=None,
                )
            )
        self._sms.send(phone, otp.message_text(code))

    def verify_otp(self, user_id: int, purpose: otp.OtpPurpose | str, code: str) -> otp.OtpStatus:
        """`ok` once for the newest live code; otherwise why not (see `otp.OtpStatus`)."""
        chosen = _purpose(purpose)
        with self._write() as conn:
            return self._use_otp(conn, user_key(user_id), chosen, code)

    def _use_otp(
        self, conn: sa.Connection, key: bytes, purpose: otp.OtpPurpose, code: str
    ) -> otp.OtpStatus:
        self._require_user(conn, key, for_update=True)
        row = conn.execute(
            sa.select(otps)
            .where(otps.c.user_id == key, otps.c.purpose == purpose)
            .order_by(otps.c.created_at.desc(), otps.c.id.desc())
            .limit(1)
        ).one_or_none()
        now_ns = self._clock.now_ns()
        matches = row is not None and hmac.compare_digest(
            row.code_hash, otp.code_hash(self._keyring, row.id, code)
        )
        status = otp.judge(row, matches, now_ns)
        if row is None:
            return status
        if status is otp.OtpStatus.OK:
            conn.execute(sa.update(otps).where(otps.c.id == row.id).values(used_at=now_ns))
        elif status is otp.OtpStatus.WRONG:
            conn.execute(
                sa.update(otps).where(otps.c.id == row.id).values(attempts=otps.c.attempts + 1)
            )
        return status

    def _check_otp_rate(
        self, conn: sa.Connection, key: bytes, purpose: otp.OtpPurpose, now_ns: int
    ) -> None:
        since_ns = now_ns - otp.OTP_RATE_WINDOW_S * NS_PER_S
        sent = conn.execute(
            sa.select(sa.func.count())
            .select_from(otps)
            .where(otps.c.user_id == key, otps.c.purpose == purpose, otps.c.created_at > since_ns)
        ).scalar_one()
        if sent >= otp.OTP_ISSUES_PER_WINDOW_MAX:
            raise OtpRateLimited(
                f"at most {otp.OTP_ISSUES_PER_WINDOW_MAX} {purpose} codes per "
                f"{otp.OTP_RATE_WINDOW_S // 60} minutes; try again later"
            )

    # -- plumbing -------------------------------------------------------------------

    def _require_user(self, conn: sa.Connection, key: bytes, *, for_update: bool = False) -> str:
        """The user's phone; `UserNotFound` if there is no such user."""
        query = _USER_PHONE_FOR_UPDATE if for_update else _USER_PHONE
        phone = query.run(conn, id=key).scalar_one_or_none()
        if phone is None:
            raise UserNotFound(f"no user {int.from_bytes(key, 'big'):032x}")
        return str(phone)

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return write_transaction(self._engine)

    def _read(self, conn: sa.Connection | None = None) -> AbstractContextManager[sa.Connection]:
        """A read transaction of its own, or the caller's `conn`."""
        return read_transaction(self._engine) if conn is None else nullcontext(conn)


def _channels(conn: sa.Connection, key: bytes) -> frozenset[Channel]:
    rows = _CHANNELS.run(conn, user=key).scalars()
    return frozenset(Channel(channel) for channel in rows)


def _channel(channel: Channel | str) -> Channel:
    try:
        return Channel(channel)
    except ValueError:
        known = ", ".join(c.value for c in Channel)
        raise ChannelUnknown(f"unknown verification channel {channel!r}; known: {known}") from None


def _purpose(purpose: otp.OtpPurpose | str) -> otp.OtpPurpose:
    try:
        return otp.OtpPurpose(purpose)
    except ValueError:
        known = ", ".join(p.value for p in otp.OtpPurpose)
        message = f"unknown one-time code purpose {purpose!r}; known: {known}"
        raise OtpPurposeUnknown(message) from None


def _validate_real_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise RealNameInvalid("real name is empty")
    if len(name) > REAL_NAME_CHARS_MAX:
        raise RealNameInvalid(f"real name is longer than {REAL_NAME_CHARS_MAX} characters")
    if not name.isprintable():
        raise RealNameInvalid("real name holds control characters")
    return name


def _class_iii_held() -> ClassIIIAlreadyHeld:
    return ClassIIIAlreadyHeld(
        "another account already holds Class III for this national ID number "
        "(one Class III account per person)"
    )
