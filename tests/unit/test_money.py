import pytest

from shared.money import InvalidAmount, format_cents, parse_cents


@pytest.mark.parametrize("text, cents", [
    ("0", 0), ("0.00", 0), ("1", 100), ("150.00", 15000), ("150.5", 15050), ("0.01", 1),
    ("1000000000.00", 100_000_000_000), ("999999999999999999.99", 10**20 - 1),
])
def test_parses_exact_decimal_strings_to_cents(text, cents):
    assert parse_cents(text) == cents


@pytest.mark.parametrize("text", [
    "", " 5", "5 ", "+5", "-5", "-0.00", "5.", ".5", "1e3", "NaN", "inf", "10.555", "abc", "1_000", "01",
    "１２", "٣", "1,00", "1.0.0", "0x10", "1" * 19, "5\n",
])
def test_refuses_everything_else(text):
    with pytest.raises(InvalidAmount):
        parse_cents(text)


@pytest.mark.parametrize("value", [5, 5.0, None, ["5"]])
def test_refuses_non_strings_so_floats_never_carry_money(value):
    with pytest.raises(InvalidAmount):
        parse_cents(value)


@pytest.mark.parametrize("cents, text", [(0, "0.00"), (1, "0.01"), (15050, "150.50"), (-250, "-2.50")])
def test_formats_cents_with_two_places(cents, text):
    assert format_cents(cents) == text
    if cents >= 0:
        assert parse_cents(text) == cents


def test_format_refuses_floats():
    with pytest.raises(TypeError):
        format_cents(1.5)
