"""Parties of the tap network in processes of their own, as they are in the world.

The issuing banks and the card network are other institutions than the acquirer and its
terminals. `IssuerHostsProcess` runs every bank's ISO 8583 issuer host (`banks.host`) in
a child process on 127.0.0.1, and `SwitchProcess` the switch (`network.switch`) in
another, each on the same database URL and keys as the platform; each tells the parent
its ports. The parties reach each other over TCP exactly as they do in one process, but
each has an interpreter of its own, so one party's work does not wait for another's.

Keys cross to a child as key material (`PartyKeys`), never through the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from milletpay.banks import Banks
from milletpay.banks.host import issuer_handler
from milletpay.banks.keys import IssuerKeyStoreKeys
from milletpay.cards.luk import LukLimits
from milletpay.core.clock import SystemClock
from milletpay.core.collector import settle_collector
from milletpay.core.keyring import KeyRing
from milletpay.emv.crypto import quiet_pyemv_warnings
from milletpay.emv.keys import IssuerKeyStore
from milletpay.network.link import Iso8583Server
from milletpay.network.switch import IssuerDirectory

#: How long the parent waits for a child's servers to listen, and then to stop.
START_TIMEOUT_S: Final = 60.0
STOP: Final = "stop"
CPU: Final = "cpu"
#: The switch's worker threads (its blocking work other than a tap's own writes).
SWITCH_WORKERS: Final = 32


@dataclass(frozen=True)
class PartyKeys:
    """The key material a child process rebuilds the platform's keys from."""

    data_keys: dict[int, bytes]
    issuer_keys_json: str

    def keyring(self) -> KeyRing:
        return KeyRing(self.data_keys)

    def issuer_keys(self) -> IssuerKeyStore:
        return IssuerKeyStore.from_json(self.issuer_keys_json, source="the parent process")


class IssuerHostsProcess:
    """`with IssuerHostsProcess(url, keys, codes) as ports:` every bank of `codes` has
    an issuer host listening on 127.0.0.1:`ports[code]` until the block ends."""

    def __init__(self, database_url: str, keys: PartyKeys, codes: Iterable[str]) -> None:
        self._child = _Child(_issuers, (database_url, keys, tuple(codes)), "issuers")

    def __enter__(self) -> dict[str, int]:
        ports: dict[str, int] = self._child.start()
        return ports

    def __exit__(self, *_exc: object) -> None:
        self._child.stop()

    def cpu_s(self) -> float:
        return self._child.cpu_s()


class SwitchProcess:
    """`with SwitchProcess(url, keys, luk_limits, issuer_ports) as port:` the card
    network's switch listens on 127.0.0.1:`port` in a child process, on the platform's
    books and services at `url`, its issuers at `issuer_ports`."""

    def __init__(
        self,
        database_url: str,
        keys: PartyKeys,
        luk_limits: LukLimits,
        issuer_ports: Mapping[str, int],
    ) -> None:
        self._child = _Child(
            _switch, (database_url, keys, luk_limits, dict(issuer_ports)), "switch"
        )

    def __enter__(self) -> int:
        port: int = self._child.start()
        return port

    def __exit__(self, *_exc: object) -> None:
        self._child.stop()

    def cpu_s(self) -> float:
        return self._child.cpu_s()


#: A child's work: start its servers, return (what the parent hears, how to stop them).
Serve = Callable[..., Awaitable[tuple[Any, Callable[[], Awaitable[None]]]]]


class _Child:
    def __init__(self, serve: Serve, args: tuple[Any, ...], name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._name = name
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_run_child, args=(serve, args, child_conn), name=f"millet-{name}", daemon=True
        )

    def start(self) -> Any:
        self._process.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self._process.kill()
            raise RuntimeError(f"the {self._name} process did not start in time")
        kind, value = self._conn.recv()
        if kind == "error":
            self._process.join(START_TIMEOUT_S)
            raise RuntimeError(f"the {self._name} process did not start: {value}")
        return value

    def cpu_s(self) -> float:
        """The CPU time (user and system) the child has used so far."""
        self._conn.send(CPU)
        if not self._conn.poll(START_TIMEOUT_S):
            raise RuntimeError(f"the {self._name} process did not answer")
        used: float = self._conn.recv()
        return used

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(STOP)
        self._process.join(START_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


def _run_child(serve: Serve, args: tuple[Any, ...], conn: Connection) -> None:
    quiet_pyemv_warnings()  # as `millet` does in the parent
    asyncio.run(_child_main(serve, args, conn))


async def _child_main(serve: Serve, args: tuple[Any, ...], conn: Connection) -> None:
    try:
        answer, stop = await serve(*args)
    except Exception as exc:  # the parent hears why, and stops waiting
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    settle_collector()  # set up: now serve with steady answers, as the API server does
    conn.send(("ok", answer))
    with contextlib.suppress(EOFError):  # EOF: the parent went away
        while await asyncio.to_thread(conn.recv) == CPU:
            conn.send(time.process_time())
    await stop()


async def _issuers(
    database_url: str, keys: PartyKeys, codes: tuple[str, ...]
) -> tuple[dict[str, int], Callable[[], Awaitable[None]]]:
    banks = Banks(
        database_url, keys.keyring(), IssuerKeyStoreKeys(keys.issuer_keys()), SystemClock()
    )
    servers: dict[str, Iso8583Server] = {}
    for code in codes:
        servers[code] = Iso8583Server(issuer_handler(banks.bank(code)))
        await servers[code].start()

    async def stop() -> None:
        for server in servers.values():
            await server.close()
        banks.close()

    return {code: server.port for code, server in servers.items()}, stop


async def _switch(
    database_url: str, keys: PartyKeys, luk_limits: LukLimits, issuer_ports: dict[str, int]
) -> tuple[int, Callable[[], Awaitable[None]]]:
    from milletpay.sim.tap import TapPlatform  # the platform's services, as `sim.tap` opens them

    platform = TapPlatform.open(
        database_url,
        keyring=keys.keyring(),
        issuer_keys=keys.issuer_keys(),
        luk_limits=luk_limits,
        group_commit=True,
    )
    # A tap's own writes are awaited on the loop (`RowWriter`); the worker threads serve
    # the rarer blocking work: completions, reversals, stand-in decisions and advices.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(SWITCH_WORKERS, thread_name_prefix="millet-switch")
    )
    directory = IssuerDirectory({})
    for code, port in issuer_ports.items():
        directory.set_address(code, "127.0.0.1", port)
    switch = platform.switch(directory)
    server = Iso8583Server(switch.handle)
    await server.start()

    async def stop() -> None:
        await server.close()
        await switch.close()
        platform.close()

    return server.port, stop
