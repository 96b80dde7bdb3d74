import pytest

from hsep_utils.parameters import SCALES, with_scale
from hsep_utils.presets import known_presets, load_preset


def test_toy_presets_load_and_fill_sizes():
    assert {"toy-glasses", "toy-smile", "toy-age", "toy-gender"} <= set(known_presets())
    for name in ("toy-glasses", "toy-smile", "toy-age", "toy-gender"):
        p = with_scale(load_preset(name))
        assert p["preset"] == name and p["attribute"] == name.split("-")[1]
        assert p["n_train_per_class"] == SCALES[p["scale"]]["n_train_per_class"]
    assert with_scale({"scale": "smoke", "n_test_per_class": 3})["n_test_per_class"] == 3


def test_toy_presets_edit_where_their_base_model_needs():
    """The committed toy model is blind to its deepest skips: its presets leave the noisiest steps
    unedited (``CUT_SKIPS_T_EDIT_MAX``); the paper's presets edit from x_T."""
    import json

    from hsep_utils.base_ddpm import CUT_SKIPS_T_EDIT_MAX
    from hsep_utils.parameters import REPO_ROOT

    assert json.loads((REPO_ROOT / "models/toy-ddpm-32/training.json").read_text())["config"]["cut_skip_levels"]
    for name in known_presets():
        p = load_preset(name)
        assert p.get("t_edit_max") == (CUT_SKIPS_T_EDIT_MAX if p["dataset_kind"] == "toy" else None), name


@pytest.mark.parametrize("key", ["latent_warmup_steps", "ema_decay"])
def test_beyond_the_paper_is_on_for_toy_presets_and_off_for_the_papers_datasets(key):
    """The latent warm-up and the weight average are beyond the paper: the real presets keep the
    paper's training, at every scale."""
    for name in known_presets():
        for scale in SCALES:
            value = with_scale({**load_preset(name), "scale": scale})[key]
            if name.startswith("toy-"):  # the scale's, or the preset's own there (toy-glasses: a shorter warm-up)
                own = (load_preset(name).get("scales") or {}).get(scale, {})
                assert value == own.get(key, SCALES[scale][key]) > 0, name
            else:
                assert value == 0, name


def test_unknown_preset_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="toy-glasses"):
        load_preset("toy-hats")


def test_bad_keys_and_values_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: x\nlearning_rat: 3\n")
    with pytest.raises(ValueError, match="learning_rat.*Allowed keys"):
        load_preset(bad)
    bad.write_text("preset: x\nscale: huge\n")
    with pytest.raises(ValueError, match="huge.*smoke"):
        load_preset(bad)
    bad.write_text("preset: [x\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_preset(bad)


def test_loss_weights_a_preset_leaves_out_weigh_one():
    """``lambdas: {silence: 10}`` in a preset changes one weight; the other terms keep the paper's 1."""
    from hsep_utils.losses import LOSS_TERMS
    from hsep_utils.preset_training import train_config
    from hsep_utils.presets import resolve
    from hsep_utils.train import TrainConfig

    params = resolve("toy-smile")
    assert train_config({**params, "lambdas": None}).lambdas == {t: 1.0 for t in LOSS_TERMS}
    weights = train_config({**params, "lambdas": {"silence": 10}}).lambdas
    assert weights == {**{t: 1.0 for t in LOSS_TERMS}, "silence": 10.0}
    assert TrainConfig(lambdas={"silence": 10}).lambdas == weights  # the API reads a partial dict alike


def test_salient_strength_is_a_number_or_auto(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: x\nsalient_strength: strong\n")
    with pytest.raises(ValueError, match="salient_strength must be a number or auto"):
        load_preset(bad)
    for ok in ("2.5", "auto", "1"):
        bad.write_text(f"preset: x\nsalient_strength: {ok}\n")
        assert load_preset(bad)["salient_strength"] in (2.5, "auto", 1)


def test_a_presets_own_sizes_stay_at_their_scale(tmp_path):
    """toy-glasses runs 50 DDIM steps at the default scale; ``-p scale smoke`` must stay a smoke run
    (its 8 training images cannot hold 64 validation images)."""
    p = load_preset("toy-glasses")
    assert (with_scale(p)["ddim_steps"], with_scale(p)["n_val_per_class"]) == (50, 64)
    smoke = with_scale({**p, "scale": "smoke"})
    assert (smoke["ddim_steps"], smoke["n_val_per_class"]) == (SCALES["smoke"]["ddim_steps"], SCALES["smoke"]["n_val_per_class"])
    assert with_scale({**p, "ddim_steps": 20})["ddim_steps"] == 20  # a key set outright wins
    bad = tmp_path / "bad.yaml"
    for text, message in (("scales: {huge: {ddim_steps: 5}}", "scales must map a scale"),
                          ("scales: {default: {lr: 1}}", r"scales.default sets \['lr'\]"),
                          ("scales: {default: {ddim_steps: many}}", "scales.default.ddim_steps must be an integer")):
        bad.write_text(f"preset: x\n{text}\n")
        with pytest.raises(ValueError, match=message):
            load_preset(bad)


def test_one_source_of_defaults():
    """Every default lives in ``parameters``: TrainConfig's fields, the notebooks' parameters cells,
    the runner and the CLI take it from there, so no two places can disagree."""
    import ast
    import dataclasses

    import nbformat

    from hsep_utils.parameters import DEFAULTS, PARAMETERS
    from hsep_utils.preset_training import train_config
    from hsep_utils.presets import REPO_ROOT, resolve
    from hsep_utils.train import TrainConfig

    # TrainConfig, field by field, against the parameter it stands for
    same_name = ("arch", "depth", "fusion_depth", "t_edit", "lr", "epochs", "kl_temperature", "common_adversary", "common_adversary_head", "edit_form", "swap_cycle", "removal_cycle", "edit_sparsity", "swap_identity", "edit_sparsity_groups",
                 "image_loss_every",
                 "seed", "kl_head", "background_salient", "consistency_scale", "kl_pairing", "classification_loss",
                 "image_term_weighting")
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in same_name:
        assert fields[name] == DEFAULTS[name], name
    assert fields["asymmetric"] == (DEFAULTS["reverse_process"] == "asymmetric")
    assert TrainConfig().lambdas == train_config(resolve("toy-glasses", {"lambdas": None})).lambdas
    # a preset's TrainConfig carries the preset's values, not TrainConfig's own
    cfg = train_config(resolve("toy-glasses"))
    glasses = resolve("toy-glasses")
    assert (cfg.n_steps, cfg.batch_per_class, cfg.max_batches, cfg.latent_warmup_steps, cfg.ema_decay, cfg.asymmetric) \
        == (glasses["ddim_steps"], glasses["batch_per_class"], glasses["train_batches"],
            glasses["latent_warmup_steps"], glasses["ema_decay"], False)

    # a notebook's parameters cell declares a parameter only with its default, and stays short
    for path in sorted((REPO_ROOT / "notebooks").glob("0*.ipynb")):
        cell = next(c for c in nbformat.read(path, 4).cells if "parameters" in c.metadata.get("tags", []))
        declared = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body}
        assert "preset" in declared and len(declared) <= 6, path.name
        for name, value in declared.items():
            if name in PARAMETERS:
                assert value == DEFAULTS[name], (path.name, name)

    # no later cell binds a parameter's name: the namespace would hand it to from_namespace
    for path in sorted((REPO_ROOT / "notebooks").glob("0*.ipynb")):
        for cell in nbformat.read(path, 4).cells:
            if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
                continue
            bound = set()
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bound.add(node.id)
            assert not bound & set(PARAMETERS), (path.name, bound & set(PARAMETERS))

    # nothing reads defaults from a notebook any more
    for module in (REPO_ROOT / "hsep_utils").glob("*.py"):
        assert "notebook_defaults" not in module.read_text(), module.name


def test_papermill_p_overrides_every_parameter(monkeypatch):
    """A notebook's namespace (its ``preset`` and what papermill injected) resolves with each
    parameter set to a value of its kind; the value reaches the notebook's parameters."""
    from hsep_utils.parameters import PARAMETERS, SCALES
    from hsep_utils.presets import SMOKE_ENV, from_namespace

    monkeypatch.delenv(SMOKE_ENV, raising=False)
    examples = {int: 3, (int, float): 0.5, str: "x", list: [1, 2], dict: {}, bool: True}
    for name, p in PARAMETERS.items():
        if name == "preset":
            continue
        value = (p.choices[-1] if p.choices else examples[p.kind if p.kind in examples else (int, float)])
        if name == "scales":
            value = {"smoke": {"ddim_steps": 3}}
        if name == "attribute":
            value = "smile"
        if name == "lambdas":
            value = {"silence": 2.0}
        if name == "ablation_grid":
            value = {"t_edit": [0], "arch": ["b"], "depth": [4]}
        if name == "scale":
            value = "full"
        if name == "dataset_kind":
            value = "folders"
        resolved = from_namespace({"preset": "toy-glasses", name: value, "unrelated": 1})
        assert resolved[name] == value, name
        assert resolved["preset"] == "toy-glasses" and "unrelated" not in resolved
    assert from_namespace({"preset": "toy-glasses"})["n_test_per_class"] == SCALES["default"]["n_test_per_class"]
    with pytest.raises(ValueError, match="ddim_steps must be an integer"):
        from_namespace({"preset": "toy-glasses", "ddim_steps": "many"})


def test_no_import_circle_in_the_library():
    """No two modules of hsep_utils import each other, directly or through others (lazy imports
    inside functions count)."""
    import ast

    from hsep_utils.presets import REPO_ROOT

    graph = {}
    for f in (REPO_ROOT / "hsep_utils").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hsep_utils."):
                deps.add(node.module.split(".")[1])
        graph[f.stem] = deps - {f.stem}

    def circle_from(start, node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return path + [nxt]
            if nxt not in path:
                found = circle_from(start, nxt, path + [nxt])
                if found:
                    return found
        return None

    circles = [c for m in sorted(graph) if (c := circle_from(m, m, [m]))]
    assert not circles, circles[0]


def test_inversions_are_cached_beside_the_data_unless_told(tmp_path):
    """A run on other data (the tests' temp folders, a user's big disk) caches beside it, not in the
    repository's cache/; cache_root says where outright."""
    from hsep_utils.presets import REPO_ROOT, resolve
    from hsep_utils.splits import inversion_dir

    assert inversion_dir(resolve("toy-glasses")).is_relative_to(REPO_ROOT / "cache" / "inversions")
    small = {"scale": "smoke", "data_root": str(tmp_path / "data")}
    assert inversion_dir(resolve("toy-glasses", small)).is_relative_to(tmp_path / "cache" / "inversions")
    told = inversion_dir(resolve("toy-glasses", {**small, "cache_root": str(tmp_path / "elsewhere")}))
    assert told.is_relative_to(tmp_path / "elsewhere" / "inversions")


def test_a_switch_takes_true_or_false_only():
    from hsep_utils.presets import from_namespace

    assert from_namespace({"preset": "toy-glasses", "compile": True})["compile"] is True
    for bad in (1, "yes"):
        with pytest.raises(ValueError, match="compile must be true or false"):
            from_namespace({"preset": "toy-glasses", "compile": bad})
