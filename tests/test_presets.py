import pytest

from hsep_utils.presets import SCALES, known_presets, load_preset, with_scale


def test_toy_presets_load_and_fill_sizes():
    assert {"toy-glasses", "toy-smile", "toy-age", "toy-gender"} <= set(known_presets())
    for name in ("toy-glasses", "toy-smile", "toy-age", "toy-gender"):
        p = with_scale(load_preset(name))
        assert p["preset"] == name and p["attribute"] == name.split("-")[1]
        assert p["n_train_per_class"] == SCALES[p["scale"]]["n_train_per_class"]
    assert with_scale({"scale": "smoke", "n_test_per_class": 3})["n_test_per_class"] == 3


@pytest.mark.parametrize("key", ["latent_warmup_steps", "ema_decay"])
def test_beyond_the_paper_is_on_for_toy_presets_and_off_for_the_papers_datasets(key):
    """The latent warm-up and the weight average are beyond the paper: the real presets keep the
    paper's training, at every scale."""
    for name in known_presets():
        for scale in SCALES:
            value = with_scale({**load_preset(name), "scale": scale})[key]
            if name.startswith("toy-"):
                assert value == SCALES[scale][key] > 0
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
    from hsep_utils.pipeline import train_config
    from hsep_utils.train_cli import notebook_defaults

    params = with_scale({**notebook_defaults(), **load_preset("toy-smile")})
    assert train_config({**params, "lambdas": None}).lambdas == {t: 1.0 for t in LOSS_TERMS}
    weights = train_config({**params, "lambdas": {"silence": 10}}).lambdas
    assert weights == {**{t: 1.0 for t in LOSS_TERMS}, "silence": 10.0}


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
