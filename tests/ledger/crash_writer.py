"""Helper for test_crash.py (not a test): streams ring batches into a ledger until killed.

Usage: python crash_writer.py DATABASE_URL ROUND

Prints `ready` once the ledger is open, then `batch N` after batch N has been committed
(create_transfers returned). Each batch is CHAINS_PER_BATCH linked chains; each chain moves
one amount all the way round the RING accounts, so every ring account's balance is the same
before and after a whole chain. Exits with status 3 if a batch is not answered all ok.
"""

from __future__ import annotations

import random
import sys
import time

from milletpay.ledger import Ledger
from milletpay.ledger.types import Transfer, TransferFlags

SOURCE = 100
RING = [101, 102, 103, 104, 105]
FUNDING = 1_000
CHAINS_PER_BATCH = 16
BATCH_SIZE = CHAINS_PER_BATCH * len(RING)
MAX_SECONDS = 120  # in case nobody kills us


def transfer_id(round_: int, batch: int, chain: int, hop: int) -> int:
    return (round_ << 64) | (batch << 16) | (chain << 8) | (hop + 1)


def batch_transfers(round_: int, batch: int) -> list[Transfer]:
    rng = random.Random(round_ * 1_000_003 + batch)
    transfers = []
    for chain in range(CHAINS_PER_BATCH):
        start = rng.randrange(len(RING))
        amount = rng.randint(1, FUNDING)
        for hop in range(len(RING)):
            last = hop == len(RING) - 1
            transfers.append(
                Transfer(
                    id=transfer_id(round_, batch, chain, hop),
                    debit_account_id=RING[(start + hop) % len(RING)],
                    credit_account_id=RING[(start + hop + 1) % len(RING)],
                    amount=amount,
                    ledger=1,
                    code=7,
                    flags=TransferFlags.NONE if last else TransferFlags.LINKED,
                    user_data_64=batch,
                    user_data_32=round_,
                )
            )
    return transfers


def main() -> int:
    url, round_ = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + MAX_SECONDS
    with Ledger.open(url) as ledger:
        print("ready", flush=True)
        batch = 0
        while time.monotonic() < deadline:
            results = ledger.create_transfers(batch_transfers(round_, batch))
            if [str(r) for r in results] != ["ok"] * BATCH_SIZE:
                print(f"error batch {batch}: {[str(r) for r in results]}", flush=True)
                return 3
            print(f"batch {batch}", flush=True)
            batch += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
