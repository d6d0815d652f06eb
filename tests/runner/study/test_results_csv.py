"""results.csv cells never run as spreadsheet formulas."""


def test_results_csv_cells_cannot_run_as_formulas():
    from runner.study.results import csv_safe, to_csv

    assert csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)" and csv_safe(-5.0) == -5.0
    text = to_csv([{"name": "ok", "exit_reason": "+cmd|calc", "cost_usd": -1.0}])
    assert ",'+cmd|calc," in text and ",-1.0," in text
