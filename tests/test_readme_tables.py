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


def test_transfer_table_appears_with_its_columns_and_population(tmp_path):
    """A toy table with the transfer and locality columns adds their table, naming the population
    the preset scores; tables without them add nothing."""
    results = tmp_path / "results" / "toy-glasses" / "tables"
    results.mkdir(parents=True)
    (results / "quantitative.csv").write_text(
        "domain,sr,oracle_sr,oracle_sr_donor,donor_match,psnr_outside,cf_mse_ratio\n"
        "x,0.9,0.8,0.7,0.75,23.456,0.5\ny,0.95,0.9,unavailable,,25.0,0.4\n")
    block = readme_tables.build_block(tmp_path / "results")
    population = readme_tables.load_preset("toy-glasses").get("test_seed")
    population = "test split" if population is None else f"sealed (`test_seed` {population})"
    assert f"| toy-glasses | {population} | x | 0.900 | 0.800 | 0.700 | 0.750 | 23.46 | 0.500 |" in block
    assert f"| toy-glasses | {population} | y | 0.950 | 0.900 | unavailable | – | 25.00 | 0.400 |" in block
    (results / "quantitative.csv").write_text("domain,sr\nx,0.9\n")
    assert "Transfer and locality" not in readme_tables.build_block(tmp_path / "results")
