"""Each chain of migrations (the platform's, the card network's, a bank's) is one line:
one head, one base, every revision reachable from the head. Two branches that each add
a migration under the same parent would leave two heads, and `upgrade("head")` would
refuse to run."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from milletpay.banks.storage import BANK_MIGRATIONS_DIR
from milletpay.network.storage import NETWORK_MIGRATIONS_DIR
from milletpay.store.migrate import MIGRATIONS_DIR


@pytest.mark.parametrize(
    "folder",
    [MIGRATIONS_DIR, NETWORK_MIGRATIONS_DIR, BANK_MIGRATIONS_DIR],
    ids=["platform", "network", "bank"],
)
def test_a_chain_of_migrations_is_one_line(folder: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(folder))
    scripts = ScriptDirectory.from_config(config)
    heads, bases = scripts.get_heads(), scripts.get_bases()
    assert len(heads) == 1, heads
    assert len(bases) == 1, bases
    walked = [r.revision for r in scripts.walk_revisions(bases[0], heads[0])]
    assert sorted(walked) == sorted(r.revision for r in scripts.walk_revisions())
