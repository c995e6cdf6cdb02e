"""The bank data file: 21 partner banks and the online bank, validated at load."""

from __future__ import annotations

from importlib import resources

import pytest

from milletpay.banks import BankDataError, ProductType, bank_for_pan, bank_spec, banks, load_banks
from milletpay.wallet.accounts import PARTNER_BANKS

ONE_BANK = """
[[bank]]
code = "AAA"
name = "A Bank"
iin_ranges = ["620001-620002"]
token_iin_range = "628001"

[[bank.products]]
code = "debit"
type = "debit"
iin = "620001"
per_transaction_limit_fen = 100
daily_limit_fen = 1000
expiry_years = 5
"""
OTHER_BANK = (
    ONE_BANK.replace('"AAA"', '"BBB"')
    .replace("620001", "620101")
    .replace("620002", "620102")
    .replace("628001", "628002")
)


def packaged_text() -> str:
    return resources.files("milletpay.banks").joinpath("banks.toml").read_text(encoding="utf-8")


def test_the_file_holds_21_partner_banks_and_one_online_bank() -> None:
    specs = banks()
    assert len(specs) == 22
    remote = [s for s in specs if s.remote_opening is not None]
    assert [s.code for s in remote] == ["PRB"]
    assert remote[0].name == "Millet Online Bank"


def test_the_wallets_bank_codes_come_from_the_file() -> None:
    assert tuple(s.code for s in banks()) == PARTNER_BANKS
    for code in ("ICBC", "CCB", "ABC", "BOC", "CMB", "PRB"):
        assert code in PARTNER_BANKS


def test_every_iin_is_in_the_unionpay_62_range_and_ranges_never_overlap() -> None:
    ranges = [r for s in banks() for r in (*s.iin_ranges, s.token_iin_range)]
    assert all(r.first.startswith("62") and r.last.startswith("62") for r in ranges)
    for i, left in enumerate(ranges):
        for right in ranges[i + 1 :]:
            assert not left.overlaps(right), (left, right)


def test_every_bank_has_a_debit_product_and_credit_products_have_a_limit() -> None:
    for spec in banks():
        types = {p.type for p in spec.products}
        assert ProductType.DEBIT in types
        for product in spec.products:
            assert spec.issues_iin(product.iin)
            assert (product.credit_limit_fen > 0) == (product.type is ProductType.CREDIT)


def test_the_online_bank_has_the_class_ii_limits() -> None:
    remote = bank_spec("PRB").remote_opening
    assert remote is not None
    assert (remote.account_class, remote.daily_limit_fen, remote.yearly_limit_fen) == (
        2,
        1_000_000,  # 10,000 CNY a day
        20_000_000,  # 200,000 CNY a year
    )


def test_a_pan_finds_its_bank_by_iin() -> None:
    icbc = bank_spec("ICBC")
    spec = bank_for_pan(icbc.products[0].iin + "0000000000000")
    assert spec is not None and spec.code == "ICBC"
    assert bank_for_pan("4111111111111111") is None


def test_a_small_valid_file_loads() -> None:
    (spec,) = load_banks(ONE_BANK)
    assert spec.code == "AAA" and str(spec.iin_ranges[0]) == "620001-620002"
    assert len(load_banks(ONE_BANK + OTHER_BANK)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ONE_BANK + ONE_BANK, "bank AAA appears twice"),
        (ONE_BANK + OTHER_BANK.replace('["620101-620102"]', '["620002-620102"]'), "overlaps"),
        (ONE_BANK + OTHER_BANK.replace('"628002"', '"620002"'), "overlaps"),
        (ONE_BANK.replace('"628001"', '"620001"'), "overlaps"),
        (ONE_BANK.replace("620001-620002", "520001-520002"), "outside the UnionPay 62 range"),
        (ONE_BANK.replace("620001-620002", "620002-620001"), "runs backwards"),
        (ONE_BANK.replace("620001-620002", "62000A-620002"), "must be 6 digits"),
        (ONE_BANK.replace('iin = "620001"', 'iin = "620003"'), "outside the bank's IIN ranges"),
        (ONE_BANK.replace('type = "debit"', 'type = "prepaid"'), "must be debit or credit"),
        (ONE_BANK.replace("daily_limit_fen = 1000", "daily_limit_fen = -1"), "positive"),
        (ONE_BANK.replace("daily_limit_fen = 1000", 'daily_limit_fen = "1000"'), "must be a int"),
        (ONE_BANK.replace('code = "AAA"', 'code = "aaa"'), "upper-case"),
        (ONE_BANK.replace("[[bank]]", "[[bank"), "not TOML"),
        ("", "bank must be a list"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_fault(text: str, message: str) -> None:
    with pytest.raises(BankDataError, match=message):
        load_banks(text)


def test_the_packaged_file_round_trips() -> None:
    assert load_banks(packaged_text()) == banks()
