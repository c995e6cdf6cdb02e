"""`millet bench tap`: taps to pay per second, end to end.

Over a fresh SQLite file in a temporary directory it prepares one cardholder per
terminal (a Millet Pay user, a funded debit card added as a contactless token, a phone
applet with a limited-use key) and runs the network on 127.0.0.1 (`sim.tap`): every
bank's ISO 8583 issuer host, the switch and the acquirer. Then each of
`terminals` concurrent readers taps its phone again and again, paced to `rate` taps a
second in all (0: as fast as they go), until `taps` are done: the kernel's APDU dialogue
with the applet, the acquirer's 0200 over TCP to the switch (detokenization, the
cryptogram checked under the token's limited-use key, duplicate check, clearing record),
the switch's 0200 to the bank, which posts the payment in its own books, and back.

The banks' issuer hosts run in a child process and the switch in another
(`sim.parties`), as other institutions would; the readers and the acquirer, the load,
run in this one. A tap's latency is from the reader's first APDU to the acquirer's
answer. At the end every bank's books are verified and the clearing records counted.
The benchmark's limited-use keys go for `LUK_USES` taps (the wallet's default is 10,
replenished online: what that costs is the card API's, not a tap's).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from stdnum.cn import ric

from milletpay.acquiring.merchants import MerchantDirectory, load_merchants
from milletpay.banks.keys import issuer_bins
from milletpay.cards.luk import LukLimits
from milletpay.core.collector import settle_collector
from milletpay.emv.keys import IssuerKeyStore
from milletpay.sim.parties import IssuerHostsProcess, PartyKeys, SwitchProcess
from milletpay.sim.tap import TapNetwork, TapPhone, TapPlatform

TAP_FEN: Final = 2_500
LUK_USES: Final = 10_000
BANK_CODES: Final = ("ICBC", "CCB", "ABC", "BOC")


@dataclass(frozen=True)
class TapBenchConfig:
    terminals: int = 16
    taps: int = 3_000
    rate: float = 0.0  # taps a second in all; 0: unpaced


def run_tap_bench(config: TapBenchConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="millet-bench-tap-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        limits = LukLimits(uses_max=LUK_USES, atc_window=LUK_USES, ttl_s=86_400)
        keys = PartyKeys(
            {1: secrets.token_bytes(32)}, IssuerKeyStore.generate(issuer_bins()).to_json()
        )
        platform = TapPlatform.open(
            url, keyring=keys.keyring(), issuer_keys=keys.issuer_keys(), luk_limits=limits
        )
        try:
            # Readers share the taps as they go, so one may make more than its share.
            taps_per_card = 2 * -(-config.taps // config.terminals)
            phones = _cardholders(platform, config.terminals, TAP_FEN * taps_per_card)
            issuers = IssuerHostsProcess(url, keys, BANK_CODES)
            with issuers as issuer_ports:
                switch = SwitchProcess(url, keys, limits, issuer_ports)
                with switch as switch_port:
                    settle_collector()  # the readers too, as the parties do
                    before = (time.process_time(), switch.cpu_s(), issuers.cpu_s())
                    latencies_ms, declined, elapsed_s = asyncio.run(
                        _run(platform, phones, config, switch_port)
                    )
                    after = (time.process_time(), switch.cpu_s(), issuers.cpu_s())
            books_ok = all(platform.banks.bank(code).ledger.verify().ok for code in BANK_CODES)
            cleared = platform.books.clearing_count()
        finally:
            platform.close()
    latencies_ms.sort()
    done = len(latencies_ms)
    return {
        "benchmark": "tap",
        "database": "sqlite",
        "terminals": config.terminals,
        "rate_asked_taps_per_s": config.rate,
        "taps": done,
        "declined": declined,
        "elapsed_s": round(elapsed_s, 2),
        "taps_per_s": round(done / elapsed_s, 1),
        "latency_ms_p50": round(statistics.median(latencies_ms), 2),
        "latency_ms_p99": round(latencies_ms[min(done - 1, int(done * 0.99))], 2),
        "latency_ms_max": round(latencies_ms[-1], 2),
        "luk_uses": LUK_USES,
        "cpu_ms_per_tap": {
            party: round((after[n] - before[n]) * 1_000 / done, 2)
            for n, party in enumerate(("readers_and_acquirer", "switch", "issuers"))
        },
        "clearing_records": cleared,
        "banks_ledger_verify_ok": books_ok,
    }


def _cardholders(platform: TapPlatform, count: int, deposit_fen: int) -> list[TapPhone]:
    """One cardholder per reader, each card's account funded for all its taps: a
    decline for lack of funds would be a cheaper tap than the ones measured."""
    phones = []
    for n in range(count):
        phone = f"1370000{n:04d}"
        body = f"11010519800101{n % 1000:03d}"
        platform.identity.register(phone, f"Rider {n}", body + ric.calc_check_digit(body + "0"))
        bank_code = BANK_CODES[n % len(BANK_CODES)]
        phones.append(platform.phone_of(phone, bank_code=bank_code, deposit_fen=deposit_fen))
    return phones


def _terminals(count: int) -> MerchantDirectory:
    """The acquirer's data with one single-message supermarket terminal per reader."""
    rows = ",\n".join(f'    {{ terminal_id = "BENCH{n:03d}" }}' for n in range(count))
    return load_merchants(
        f"""
[acquirer]
institution_id = "49990000"
country = "CN"
country_numeric = "156"
currency_numeric = "156"

[terminal_defaults]
contactless_limit_fen = 500_000
cvm_limit_fen = 30_000
floor_limit_fen = 0

[[merchant]]
merchant_id = "999100054119999"
name = "Millet Bench Market"
city = "Beijing"
mcc = "5411"
style = "single"
terminals = [
{rows}
]
"""
    )


async def _run(
    platform: TapPlatform,
    phones: list[TapPhone],
    config: TapBenchConfig,
    switch_port: int,
) -> tuple[list[float], int, float]:
    latencies_ms: list[float] = []
    declined = 0
    directory = _terminals(len(phones))
    interval_s = len(phones) / config.rate if config.rate > 0 else 0.0
    remaining = [config.taps]

    async with TapNetwork(
        platform, BANK_CODES, directory=directory, switch_port=switch_port
    ) as network:

        async def reader(n: int, phone: TapPhone) -> None:
            nonlocal declined
            terminal = f"BENCH{n:03d}"
            next_at = time.perf_counter() + interval_s * n / len(phones)
            while remaining[0] > 0:
                remaining[0] -= 1
                if interval_s:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval_s
                started = time.perf_counter()
                tapped = await network.tap(phone, terminal, TAP_FEN)
                latencies_ms.append((time.perf_counter() - started) * 1_000)
                declined += not tapped.approved

        started = time.perf_counter()
        await asyncio.gather(*(reader(n, phone) for n, phone in enumerate(phones)))
        elapsed_s = time.perf_counter() - started
    return latencies_ms, declined, elapsed_s
