# The committed toy-glasses network scored by notebook 04 on a sealed population and on the old test split,
# each with a judge trained by today's code, in empty results folders under /tmp (docs/experiments.md,
# "the committed network on the sealed population").
set -e
cd "$(dirname "$0")/.."
source .venv/bin/activate
for R in /tmp/sealed /tmp/oldtest; do
  rm -rf $R; mkdir -p $R/toy-glasses/mapping
  cp results/toy-glasses/mapping/{best.pt,salient_strength.csv,train_config.json} $R/toy-glasses/mapping/
  cp results/toy-glasses/{classifier.pt,hspace_steps.csv} $R/toy-glasses/
done
python - <<'PY'
from hsep_utils import presets
from hsep_utils.splits import load_preset_data
from hsep_utils.classifier import fit_attribute_classifier, save_classifier
for root, seed in (("/tmp/sealed", 20261201), ("/tmp/oldtest", None)):
    P = presets.resolve("toy-glasses", {"results_root": root, "test_seed": seed})
    data = load_preset_data(P, 32, P["n_val_per_class"])
    m, acc = fit_attribute_classifier(data, P["seed"], progress=False, role="judge")
    save_classifier(m, acc, f"{root}/toy-glasses/judge.pt")
    print(root, "judge accuracy", acc)
PY
time python -m hsep_utils.reproduce --preset toy-glasses --notebooks 04 -p results_root /tmp/sealed -p test_seed 20261201
time python -m hsep_utils.reproduce --preset toy-glasses --notebooks 04 -p results_root /tmp/oldtest
