"""`millet bench transit`: how fast a gate decides a tap, and how fast a day clears.

Gate taps: Beijing metro gates (entry at Pingguoyuan, exit at Yuquanlu, the fare by
distance from the card's own trip record) decide `taps` taps of phones' purse applets,
in this process: every APDU, the secure module's MAC1, the card's MAC2 and TAC checked,
the fare engine, the tap record kept. A tap's latency is the gate's whole decision.
Each card is replaced before its balance runs out.

Clearing: `clearing_records` tap records with real TACs uploaded in batches into a fresh
SQLite file (or the database `url` names), verified and cleared to the operators
(`transit.clearing.clear_benchmark`).
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Final

from milletpay.core.clock import NS_PER_S
from milletpay.transit.blacklist import BlacklistService
from milletpay.transit.clearing import clear_benchmark
from milletpay.transit.fares import Mode, Tap
from milletpay.transit.gate import Gate
from milletpay.transit.purse import BALANCE_MAX_FEN, Purse, PurseProfile
from milletpay.transit.sam import CityMasterKeys, PurchaseSam

CITY: Final = "beijing"
#: Taps one card makes before a new card takes its place (its balance would run out).
TAPS_PER_CARD: Final = 100
START_NS: Final = 1_795_000_000 * NS_PER_S  # a weekday morning in November 2026
SECONDS_BETWEEN_TAPS: Final = 600


@dataclass(frozen=True)
class TransitBenchConfig:
    taps: int = 20_000
    clearing_records: int = 1_000_000
    url: str | None = None


def run_transit_bench(config: TransitBenchConfig) -> dict[str, Any]:
    latencies_ms = _gate_taps(config.taps)
    latencies_ms.sort()
    taps = len(latencies_ms)
    clearing = clear_benchmark(config.clearing_records, config.url)
    return {
        "benchmark": "transit",
        "gate_taps": taps,
        "gate_taps_per_s": round(taps / (sum(latencies_ms) / 1_000), 1),
        "gate_latency_ms_p50": round(statistics.median(latencies_ms), 3),
        "gate_latency_ms_p99": round(latencies_ms[min(taps - 1, int(taps * 0.99))], 3),
        "clearing_records": clearing.records,
        "clearing_cards": clearing.cards,
        "clearing_upload_s": round(clearing.upload_s, 2),
        "clearing_clear_s": round(clearing.clear_s, 2),
        "clearing_total_s": round(clearing.total_s, 2),
        "clearing_records_per_s": round(clearing.records / clearing.total_s, 1),
        "clearing_gaps": clearing.gaps_total,
        "database": config.url or "sqlite (temporary file)",
    }


def _gate_taps(count: int) -> list[float]:
    keys = CityMasterKeys.generate()
    blacklist = BlacklistService()
    entry = _gate(keys, blacklist, Tap.ENTRY, "pingguoyuan", 1)
    exit_ = _gate(keys, blacklist, Tap.EXIT, "yuquanlu", 2)
    latencies_ms: list[float] = []
    now_ns = START_NS
    for card_number in itertools.count(1):
        purse = _card(keys, card_number)
        for n in range(TAPS_PER_CARD):
            if len(latencies_ms) == count:
                return latencies_ms
            now_ns += SECONDS_BETWEEN_TAPS * NS_PER_S
            gate = entry if n % 2 == 0 else exit_
            started = time.perf_counter()
            decision = gate.tap(purse.process, now_ns)
            latencies_ms.append((time.perf_counter() - started) * 1_000)
            assert decision.opened, decision.reason
            gate.drain_records(TAPS_PER_CARD)
    raise AssertionError("unreachable")


def _gate(
    keys: CityMasterKeys, blacklist: BlacklistService, tap: Tap, station: str, n: int
) -> Gate:
    sam = PurchaseSam([keys], n.to_bytes(6, "big"))
    return Gate(f"bench-{tap}", CITY, Mode.METRO, tap, sam, blacklist, station=station)


def _card(keys: CityMasterKeys, n: int) -> Purse:
    number = bytes.fromhex(f"1000{n:016d}")
    profile = PurseProfile(
        card_number=number,
        issuer_id=bytes(8),
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(keys.card_keys(number),),
    )
    return Purse(profile, balance_fen=BALANCE_MAX_FEN)
