"""The claim checks the chapters use: a true claim prints, a false one raises."""
import pytest

from smallunet.book.claims import ClaimFailed, check, number


def test_true_claim_prints(capsys):
    assert check("2 < 3", 2 < 3, "2 vs 3")
    assert capsys.readouterr().out == "✓ 2 < 3 (2 vs 3)\n"


def test_false_claim_raises_naming_it():
    with pytest.raises(ClaimFailed, match=r"the text claims: 'DDPM beats DDIM', but the outputs say otherwise \(81.4 vs 70.0\)"):
        check("DDPM beats DDIM", 81.4 < 70.0, "81.4 vs 70.0")
    with pytest.raises(TypeError, match="claim must be a non-empty str"):
        check("", True)


def test_number_prints_the_value(capsys):
    assert number("FID", 12.3456, ".1f") == "12.3"
    assert capsys.readouterr().out == "FID = 12.3\n"
