"""The batch runner: --resume skips notebooks that finished with the same parameters, and reruns
everything from the first notebook that did not."""
import json
import os
import re

import papermill as pm

from hsep_utils import reproduce
from hsep_utils.presets import load_preset


def _fake_execute(calls):
    def execute(src, target, parameters, **kw):
        calls.append(os.path.basename(src))
        nb = {"cells": [], "metadata": {"papermill": {"exception": None, "end_time": "now", "parameters": parameters}}}
        with open(target, "w") as f:
            json.dump(nb, f)
    return execute


def test_resume_skips_finished_notebooks_and_reruns_after_the_first_change(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pm, "execute_notebook", _fake_execute(calls))
    over = {"results_root": str(tmp_path)}
    reproduce.run_preset("toy-glasses", over, log=lambda *a: None, only=["00", "01", "02"])
    assert calls == ["00_dataset_split.ipynb", "01_hspace_reconstruction_steps.ipynb", "02_train_mapping_network.ipynb"]

    calls.clear()
    reproduce.run_preset("toy-glasses", over, log=lambda *a: None, resume=True, only=["00", "01", "02"])
    assert calls == []  # all finished with these parameters

    out = tmp_path / "toy-glasses"
    meta = json.loads((out / "01_hspace_reconstruction_steps.ipynb").read_text())
    meta["metadata"]["papermill"]["exception"] = True  # 01 failed last time: it and everything after rerun
    (out / "01_hspace_reconstruction_steps.ipynb").write_text(json.dumps(meta))
    reproduce.run_preset("toy-glasses", over, log=lambda *a: None, resume=True, only=["00", "01", "02"])
    assert calls == ["01_hspace_reconstruction_steps.ipynb", "02_train_mapping_network.ipynb"]

    calls.clear()
    lines = []
    (out / "tables").mkdir()
    (out / "tables" / "quantitative.md").write_text("| … |")  # written before this run: not named at its end
    os.utime(out / "tables" / "quantitative.md", (0, 0))
    reproduce.run_preset("toy-glasses", over, log=lines.append, only=["00"])
    assert re.fullmatch(r"\[toy-glasses\] 1 notebook run in 0 min \d+ s", lines[-1])
    fake = _fake_execute(calls)
    monkeypatch.setattr(pm, "execute_notebook", lambda *a, **k: fake(*a, **k) or
                        (out / "tables" / "quantitative.md").write_text("|"))  # the notebooks write the table anew
    reproduce.run_preset("toy-glasses", over, log=lines.append, only=["00", "04"])
    assert re.fullmatch(r"\[toy-glasses\] 2 notebooks run in 0 min \d+ s; open .*tables/quantitative\.md", lines[-1])
    monkeypatch.setattr(pm, "execute_notebook", fake)

    calls.clear()
    reproduce.run_preset("toy-glasses", {**over, "seed": 1}, log=lambda *a: None, resume=True, only=["00"])
    assert calls == ["00_dataset_split.ipynb"]  # other parameters: not the same run
    ran = load_preset(out / "params.yaml")  # what ran, kept beside the results: the preset, the override, every default
    assert ran["seed"] == 1 and ran["lambdas"] == {"silence": 30} and ran["kl_temperature"] == 1.0


def test_all_toy_expands_to_the_toy_presets():
    names = reproduce.expand_presets(["all-toy"])
    assert names == sorted(names) and len(names) == 4 and all(load_preset(n)["dataset_kind"] == "toy" for n in names)


def test_a_plain_run_is_the_study_and_the_ablation_runs_on_request(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(pm, "execute_notebook", _fake_execute(calls))
    root = ["-p", "results_root", str(tmp_path)]
    assert reproduce.main(root) == 0
    assert [c[:2] for c in calls] == ["00", "01", "02", "03", "04"]
    calls.clear()
    assert reproduce.main(root + ["--notebooks", "05"]) == 0
    assert calls == ["05_ablation_tables.ipynb"]
    calls.clear()
    assert reproduce.main(root + ["--with-ablation"]) == 0
    assert [c[:2] for c in calls] == ["00", "01", "02", "03", "04", "05"]


def test_the_runner_shows_cells_and_what_they_print_without_kernel_warnings(tmp_path, capfd, caplog):
    logged = []
    reproduce.run_preset("toy-glasses", {"results_root": str(tmp_path / "results"), "data_root": str(tmp_path / "data"),
                                         "scale": "smoke"}, log=logged.append, only=["00"])
    assert not [r for r in caplog.records if "unknown parameter" in r.getMessage()]  # papermill injects only preset
    cells = [m.groups() for m in map(re.compile(r"\[toy-glasses\] 00 cell (\d+)/(\d+): (.*)").match, logged) if m]
    n = int(cells[0][1])
    assert [int(k) for k, _, _ in cells] == list(range(1, n + 1))  # every code cell, the injected parameters included
    assert any(first.startswith("from hsep_utils import") for _, _, first in cells)
    out, err = capfd.readouterr()
    assert "dataset: toy-glasses-32px-seed0-8x4" in out  # a cell's print, shown while the notebook runs
    assert "Kernel is running over TCP" not in out + err
