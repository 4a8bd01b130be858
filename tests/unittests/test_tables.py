"""evaluation/tables.py: the numbers every results table prints."""

from robust_brain.evaluation.tables import seed_table, wer_table


def _row(system, errors, words, condition="pink_0dB"):
    return dict(
        system=system,
        recogniser="r",
        condition=condition,
        sub=errors,
        ins=0,
        n_ref=words,
        **{"del": 0},
    )


def test_percentages_round_as_errors_over_words():
    """23 / 80 = 28.75 % prints 28.8 (100 * 23 / 80), not the 28.7 that
    100 * (23 / 80) rounds to."""
    cells = wer_table([_row("A", 23, 80)]).splitlines()[-1].split(" | ")
    assert cells[1] == "28.8" and cells[3] == "28.8 |"  # the group, all
    table = seed_table({"1": [_row("A", 23, 80)]}, {"low": ["pink_0dB"]})
    assert "| A | 1 | 28.8 ± 0.0 |" in table


def test_pooled_column_leaves_out_groups_without_reference_words():
    rows = [_row("A", 1, 10), _row("A", 2, 0, condition="babble_0dB")]
    # pink 10 %, babble has no words: "all" pools pink only
    assert "| A | 10.0 | – | 10.0 | 10.0 |" in wer_table(rows)
