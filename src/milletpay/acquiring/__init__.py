"""Acquiring for Millet Pay: the POS terminal's side of a tap. `kernel` holds the
contactless kernel that drives a phone's payment applet through an NFC field and hands
the acquirer host an online request (track 2, field 55 with the ARQC) or the reason there
is none. Merchants, the acquirer host and fees live beside it; none of it imports
`milletpay.cards` or reaches a phone other than through APDUs.
"""

from milletpay.acquiring.kernel import (
    CVM_RESULTS,
    AuthorizationData,
    ContactlessCard,
    ContactlessKernel,
    Cvm,
    Exchange,
    FieldLost,
    KernelOutcome,
    NfcField,
    OutcomeKind,
    TerminalConfig,
    TerminalConfigError,
    Transaction,
    TransactionInvalid,
    Transport,
)

__all__ = [
    "CVM_RESULTS",
    "AuthorizationData",
    "ContactlessCard",
    "ContactlessKernel",
    "Cvm",
    "Exchange",
    "FieldLost",
    "KernelOutcome",
    "NfcField",
    "OutcomeKind",
    "TerminalConfig",
    "TerminalConfigError",
    "Transaction",
    "TransactionInvalid",
    "Transport",
]
