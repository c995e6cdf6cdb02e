"""The quick-pay test world: a migrated database, a clock, the services, a registered user."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from milletpay.core.clock import ManualClock
from milletpay.identity import IdentityService
from milletpay.identity.devices import MILLET_RP, Device, DeviceRegistry
from milletpay.identity.quickpay import QuickPay
from milletpay.sim.phone import SimulatedPhone

FINGER = "right thumb"
ORIGIN = MILLET_RP.origins[0]


@dataclass
class World:
    engine: sa.Engine
    clock: ManualClock
    identity: IdentityService
    registry: DeviceRegistry
    quickpay: QuickPay
    user_id: int

    def phone(self, device_id: str = "phone-1", model: str = "Millet 14") -> SimulatedPhone:
        phone = SimulatedPhone(device_id, model, self.clock)
        phone.enroll_fingerprint(FINGER)
        return phone

    def bind(self, phone: SimulatedPhone, user_id: int | None = None) -> Device:
        """The whole binding ceremony, fingerprint included."""
        owner = self.user_id if user_id is None else user_id
        options = self.registry.begin_binding(owner, phone.device_id, phone.model)
        assert phone.touch(FINGER)
        attestation = phone.create_credential(options, ORIGIN)
        assert attestation is not None
        return self.registry.finish_binding(owner, attestation)
