"""The README's results table is generated from the committed CSVs and must match them."""
import shutil

import pytest

from hsep_utils import readme_tables
from hsep_utils.presets import REPO_ROOT


def test_readme_table_matches_committed_csvs():
    assert readme_tables.main(["--check"]) == 0, "run: python -m hsep_utils.readme_tables"


def test_check_fails_on_a_changed_csv_and_update_repairs_it(tmp_path):
    results, readme = tmp_path / "results", tmp_path / "README.md"
    shutil.copytree(REPO_ROOT / "results" / "toy-glasses" / "tables", results / "toy-glasses" / "tables")
    readme.write_text("# x\n\n" + readme_tables.START + "\nold\n" + readme_tables.END + "\n\nafter\n")
    args = ["--readme", str(readme), "--results", str(results)]
    assert readme_tables.main(args + ["--check"]) == 1
    assert readme_tables.main(args) == 0
    assert readme_tables.main(args + ["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n") and text.endswith("\nafter\n") and "old" not in text
    assert "| toy-smile | – | not run yet" in text  # a preset without a CSV says so

    csv = results / "toy-glasses" / "tables" / "quantitative.csv"
    lines = csv.read_text().splitlines()
    cols = lines[1].split(",")
    sr = lines[0].split(",").index("sr")
    cols[sr] = "0.5"
    csv.write_text("\n".join([lines[0], ",".join(cols), *lines[2:]]) + "\n")
    assert readme_tables.main(args + ["--check"]) == 1
    readme_tables.main(args)
    assert "| toy-glasses | x |" in readme.read_text() and "| 0.500 |" in readme.read_text()


def test_missing_markers_are_named(tmp_path):
    with pytest.raises(ValueError, match="results-table:start"):
        readme_tables.update("no markers here", "block")
