"""The banks on the issuer key store of `milletpay.emv.keys`, as in production."""

from __future__ import annotations

from milletpay.banks import Banks
from milletpay.banks.keys import CVK_BYTES, PVK_BYTES, IssuerKeyStoreKeys, issuer_bins
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv import crypto
from milletpay.emv.keys import IssuerKeyStore, KeyKind, owner_of

from .conftest import PIN, Holder, cnp_request, pin_request, yuan


def test_the_store_keys_every_card_product_of_every_bank() -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    keys = IssuerKeyStoreKeys(store)
    codes = {code for code, _ in issuer_bins()}
    assert len(codes) == 22
    cvks = {keys.cvk(code) for code in codes}
    pvks = {keys.pvk(code) for code in codes}
    assert len(cvks) == len(pvks) == 22  # a key of its own for each bank
    assert {len(k) for k in cvks} == {CVK_BYTES}
    assert {len(k) for k in pvks} == {PVK_BYTES}
    assert keys.cvk("ICBC").hex() not in repr(keys).lower()


def test_a_card_issued_on_the_store_authorizes_with_its_cvn2_and_pin(database_url: str) -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    banks = Banks(database_url, KeyRing.generate(), IssuerKeyStoreKeys(store), ManualClock())
    try:
        bank = banks.bank("CMB")
        customer = bank.open_customer("Holder 1")
        account = bank.open_account(customer, "debit")
        assert bank.deposit(account.account.id, yuan(100), "opening")
        card = bank.issue_card(account.account.id, pin=PIN)
        # The CVN2 is the standard CVV of the store's CVK (service code 000).
        cvk = store.cvk("CMB").key
        assert card.cvn2 == crypto.cvn2(cvk, card.pan, card.expiry_yymm)

        holder = Holder(bank, "Holder 1", account, card)
        assert banks.authorize(cnp_request(holder, yuan(10), "cnp-1")).response_code == "00"
        assert banks.authorize(pin_request(holder, yuan(10), "pin-1")).response_code == "00"

        # A newer CVK version does not change the cards already issued.
        rotated = store.rotated(KeyKind.CVK, owner_of(KeyKind.CVK, "CMB"))
        assert IssuerKeyStoreKeys(rotated).cvk("CMB") == cvk
        assert bank.verify().ok
    finally:
        banks.close()
