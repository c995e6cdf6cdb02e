"""The SQLite write gate (`store.engine.write_gate`) holds across processes: the writers
of two processes are never inside it at once, and every one of their transactions lands."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from milletpay.store.engine import (
    create_engine,
    write_gate,
    write_gate_contended,
    write_transaction,
)

ROUNDS = 150


def _writer(url: str, inside: str, rounds: int) -> None:
    """Take the gate `rounds` times; inside, claim the `inside` marker file (O_EXCL
    fails if a writer of the other process is inside too), add one to the counter, and
    stay a moment so that an overlap would show."""
    engine = create_engine(url)
    try:
        for _ in range(rounds):
            with write_gate(engine):
                os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                try:
                    with (
                        engine.connect().execution_options(millet_write_lock=True) as conn,
                        conn.begin(),
                    ):
                        conn.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")
                    time.sleep(0.000_5)
                finally:
                    os.unlink(inside)
    finally:
        engine.dispose()


def test_writers_of_two_processes_take_turns_at_the_gate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    engine = create_engine(url)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter (id, n) VALUES (1, 0)")
    inside = str(tmp_path / "inside")
    context = multiprocessing.get_context("spawn")
    others = [context.Process(target=_writer, args=(url, inside, ROUNDS)) for _ in range(2)]
    for other in others:
        other.start()
    _writer(url, inside, ROUNDS)  # and this process too
    for other in others:
        other.join(120)
    assert [other.exitcode for other in others] == [0, 0]  # no writer found another inside
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 3 * ROUNDS
    assert (tmp_path / "gate.db-writer").exists()
    engine.dispose()


def _hold_gate(url: str, held: Any, release: Any) -> None:
    """Hold the gate until told to let go."""
    engine = create_engine(url)
    try:
        with write_gate(engine):
            held.set()
            release.wait(60)
    finally:
        engine.dispose()


def test_a_writer_knows_when_another_process_last_held_the_gate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'contended.db'}"
    engine = create_engine(url)
    assert not write_gate_contended(engine)  # no write yet
    with write_gate(engine):
        pass
    assert not write_gate_contended(engine)  # alone: found it free
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    other = context.Process(target=_hold_gate, args=(url, held, release))
    other.start()
    try:
        assert held.wait(60)
        threading.Timer(0.2, release.set).start()
        with write_gate(engine):  # waits for the other process
            pass
        assert write_gate_contended(engine)
    finally:
        release.set()
        other.join(60)
    time.sleep(0.05)
    with write_gate(engine):  # alone again: the contention is past
        pass
    assert write_gate_contended(engine)  # within the last second
    assert not write_gate_contended(engine, within_s=0.01)
    engine.dispose()
