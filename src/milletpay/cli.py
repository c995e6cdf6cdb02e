"""The `millet` command: demo, ledger operations and benchmarks."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from milletpay.emv.crypto import quiet_pyemv_warnings
from milletpay.store.engine import ENV_DATABASE_URL, resolve_database_url, sqlite_path

app = typer.Typer(
    help="Millet Pay: mobile wallet and payments platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints its figures.", no_args_is_help=True)
pos_app = typer.Typer(help="A QuickPass POS terminal of the acquirer.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(pos_app, name="pos")
app.add_typer(bench_app, name="bench")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=f"SQLAlchemy URL; default ${ENV_DATABASE_URL}, else sqlite:///millet.db",
        show_default=False,
    ),
]


@app.command()
def demo(database_url: DatabaseUrl = None) -> None:
    """Run a day of Millet Pay on the database and show the books."""
    from milletpay.sim.demo import run_demo

    ok = run_demo(resolve_database_url(database_url), Console())
    raise typer.Exit(0 if ok else 1)


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    card_network: Annotated[
        str | None,
        typer.Option(help="The card network switch, host:port, for in-app card payments."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port (one a core; on SQLite their writes "
            "take turns at the database's write gate).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, paths under /v1)."""
    import uvicorn

    from milletpay.api import create_app
    from milletpay.api.app import ENV_CARD_NETWORK

    switch = None if card_network is None else _host_port(card_network, "--card-network")
    url = resolve_database_url(database_url)
    if workers == 1:
        uvicorn.run(create_app(url, card_network=switch), host=host, port=port)
        return
    # Each process builds the app for itself from the environment it inherits (their
    # migrations take turns: the write gate on SQLite, an advisory lock on PostgreSQL).
    # The sandbox's key files, when there are none yet, are made once, here: processes
    # making them each would each have keys of their own.
    from milletpay.banks.keys import issuer_bins
    from milletpay.core.keyring import KeyRing
    from milletpay.emv.keys import IssuerKeyStore

    KeyRing.from_environment()
    IssuerKeyStore.from_environment(issuer_bins())
    os.environ[ENV_DATABASE_URL] = url
    if card_network is not None:
        os.environ[ENV_CARD_NETWORK] = card_network
    else:  # the processes serve what this command was told, not a stray variable
        os.environ.pop(ENV_CARD_NETWORK, None)
    uvicorn.run(
        "milletpay.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
    )


def _host_port(text: str, option: str) -> tuple[str, int]:
    """`host:port` as a pair; exit 2 naming the option for anything else."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65_536:
        Console(stderr=True).print(f"[red]{option}: expected host:port, not {text!r}[/red]")
        raise typer.Exit(2)
    return host, int(port)


@app.command("partner-key")
def partner_key(
    partner_id: Annotated[str, typer.Argument(help="A registered partner's id.")],
) -> None:
    """Print a quick-pay partner's API key (from the key ring of this environment)."""
    from milletpay.api.partners import partner_api_key
    from milletpay.core.keyring import KeyRing
    from milletpay.identity.quickpay import PARTNERS

    if partner_id not in PARTNERS:
        Console(stderr=True).print(
            f"[red]no partner {partner_id!r}; registered: {', '.join(sorted(PARTNERS))}[/red]"
        )
        raise typer.Exit(2)
    print(partner_api_key(KeyRing.from_environment(), partner_id))


@pos_app.command("tap")
def pos_tap(
    phone: Annotated[str, typer.Option(help="The paying Millet Pay user's phone number.")],
    amount: Annotated[str, typer.Option(help="The amount in CNY, like 25.00.")],
    merchant: Annotated[
        str, typer.Option(help="The merchant id (ISO 8583 field 42) of the acquirer's data.")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Tap the user's phone on the merchant's reader: every hop printed (APDUs, ISO 8583
    fields, the bank's decision). The user's first tap adds a debit card as a token."""
    from milletpay.sim.pos import run_pos_tap

    code = run_pos_tap(resolve_database_url(database_url), phone, amount, merchant, Console())
    raise typer.Exit(code)


@ledger_app.command("verify")
def ledger_verify(database_url: DatabaseUrl = None) -> None:
    """Check every ledger invariant; exits 1 with a report when anything is off."""
    from milletpay.ledger import Ledger

    console = Console()
    url = resolve_database_url(database_url)
    sqlite_file = sqlite_path(url)
    if sqlite_file is not None and not sqlite_file.exists():
        console.print(f"[red]no ledger database at {sqlite_file}[/red]")
        raise typer.Exit(2)
    with (
        Ledger.open(url) as ledger,
        Progress(
            TextColumn("verifying transfers"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("verify", total=None)
        report = ledger.verify(
            lambda done, total: progress.update(task, completed=done, total=total)
        )
    summary = (
        f"{report.ledgers} ledgers, {report.accounts:,} accounts, {report.transfers:,} transfers"
    )
    if report.ok:
        console.print(f"[green]ledger verify: ok[/green] ({summary})")
        return
    console.print(f"[red]ledger verify: {len(report.problems)} problems[/red] ({summary})")
    for problem in report.problems:
        console.print(f"  - {problem}")
    raise typer.Exit(1)


@bench_app.command("ledger")
def bench_ledger(
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    transfers: Annotated[int, typer.Option(min=1, help="Transfers in the batch run.")] = 500_000,
    accounts: Annotated[
        int, typer.Option(min=2, help="Accounts the transfers pick from.")
    ] = 10_000,
    hot_accounts: Annotated[
        int, typer.Option(min=0, help="Accounts in the hot-account run (0: skip it).")
    ] = 100,
    batcher_transfers: Annotated[
        int, typer.Option(min=1, help="Transfers sent one by one through the batcher.")
    ] = 50_000,
    clients: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent batcher clients.")] = 64,
    deep_account_transfers: Annotated[
        int, typer.Option(min=0, help="Transfers on the one account whose history is queried.")
    ] = 1_000_000,
) -> None:
    """Measure ledger throughput against a plain insert of the same rows."""
    from milletpay.sim.bench import LedgerBenchConfig, run_ledger_bench

    config = LedgerBenchConfig(
        transfers=transfers,
        accounts=accounts,
        hot_accounts=hot_accounts,
        batcher_transfers=batcher_transfers,
        clients=clients,
        deep_account_transfers=deep_account_transfers,
    )
    console = Console(stderr=True)
    result = run_ledger_bench(database_url, config, console)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        Console().print_json(json.dumps(result))


@bench_app.command("wallet")
def bench_wallet(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    users: Annotated[
        int, typer.Option(min=2, help="Users prepared with a topped-up wallet.")
    ] = 256,
    clients: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent HTTP clients.")] = 32,
    transfers: Annotated[int, typer.Option(min=1, help="P2P transfers to send at most.")] = 4_000,
    duration: Annotated[
        float, typer.Option(min=1.0, max=3600.0, help="Seconds to send for at most.")
    ] = 60.0,
) -> None:
    """P2P transfers per second through the HTTP API on 127.0.0.1 (fresh SQLite file)."""
    from milletpay.sim.bench_wallet import WalletBenchConfig, run_wallet_bench

    config = WalletBenchConfig(
        users=users, clients=clients, transfers=transfers, duration_s=duration
    )
    result = run_wallet_bench(config)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        Console().print_json(json.dumps(result))


@bench_app.command("checkout")
def bench_checkout(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    users: Annotated[int, typer.Option(min=1, help="Payers prepared with a wallet.")] = 256,
    clients: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent HTTP clients.")] = 32,
    payments: Annotated[int, typer.Option(min=1, help="Payments to make at most.")] = 3_000,
    duration: Annotated[
        float, typer.Option(min=1.0, max=3600.0, help="Seconds to pay for at most.")
    ] = 60.0,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="API server processes, each on a port of its own."),
    ] = 2,
) -> None:
    """In-app payments per second through the HTTP API: a payment intent created by the
    merchant and confirmed from the wallet (fresh SQLite file)."""
    from milletpay.sim.bench_checkout import CheckoutBenchConfig, run_checkout_bench

    config = CheckoutBenchConfig(
        users=users, clients=clients, payments=payments, duration_s=duration, workers=workers
    )
    result = run_checkout_bench(config)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        Console().print_json(json.dumps(result))


@bench_app.command("transit")
def bench_transit(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    taps: Annotated[int, typer.Option(min=1, max=10_000_000, help="Gate taps.")] = 20_000,
    clearing_records: Annotated[
        int,
        typer.Option(min=10, max=100_000_000, help="Tap records to upload and clear."),
    ] = 1_000_000,
    database_url: DatabaseUrl = None,
) -> None:
    """Gate tap decisions per second (APDUs, MACs, the fare) and clearing throughput."""
    from milletpay.sim.bench_transit import TransitBenchConfig, run_transit_bench
    from milletpay.transit.clearing import BENCHMARK_TAPS_PER_CARD

    if clearing_records % BENCHMARK_TAPS_PER_CARD:
        raise typer.BadParameter(
            f"a multiple of {BENCHMARK_TAPS_PER_CARD} (each card taps that often)",
            param_hint="--clearing-records",
        )

    result = run_transit_bench(
        TransitBenchConfig(taps=taps, clearing_records=clearing_records, url=database_url)
    )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        Console().print_json(json.dumps(result))


@bench_app.command("tap")
def bench_tap(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    terminals: Annotated[
        int, typer.Option(min=1, max=512, help="Concurrent readers, one phone each.")
    ] = 16,
    taps: Annotated[int, typer.Option(min=1, max=1_000_000, help="Taps in all.")] = 3_000,
    rate: Annotated[
        float, typer.Option(min=0.0, max=100_000.0, help="Taps a second in all; 0: unpaced.")
    ] = 0.0,
) -> None:
    """Taps to pay end to end (APDUs, acquirer, TCP to the switch, the bank's books),
    the switch and the issuer hosts in processes of their own."""
    from milletpay.sim.bench_tap import TapBenchConfig, run_tap_bench

    result = run_tap_bench(TapBenchConfig(terminals=terminals, taps=taps, rate=rate))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        Console().print_json(json.dumps(result))


def main() -> None:
    quiet_pyemv_warnings()
    app()


if __name__ == "__main__":  # `python -m milletpay.cli`, as well as the `millet` script
    main()
