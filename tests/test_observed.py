"""What "observed" means: a template's text in the model's tuning collection
(`jaxrobust.data.tuning`), observed wording apart from observed wording and data
set in the report (a hand-made grid), and collections users declare."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_report import qa_rows, write_records

from jaxrobust.analysis import report, scoring, stats
from jaxrobust.data import templates as tmpl
from jaxrobust.data import tuning

REPO = pathlib.Path(__file__).resolve().parents[1]
P3_BOOLQ = "observed:p3:super_glue/boolq"
P3_CSQA = "observed:p3:commonsense_qa"
P3_SEMEVAL = "observed:p3:sem_eval_2010_task_8"
P3_ARC = "observed:p3:ai2_arc/ARC-Easy"


@pytest.mark.parametrize(
    "provenance, dataset, collections, want",
    [
        # T0++ never trained on SemEval: its P3 prompts are not T0++'s text.
        (P3_SEMEVAL, "semeval", ("t0++",), "other"),
        (P3_SEMEVAL, "boolq", ("t0++",), "other"),
        # BoolQ's P3 prompts: T0++ trained on BoolQ with them; T0 never saw them.
        (P3_BOOLQ, "boolq", ("t0++",), "observed_dataset"),
        (P3_BOOLQ, "boolq", ("t0",), "other"),
        (P3_BOOLQ, "boolq", ("t0+",), "other"),
        # A multiple-choice set of T0's mixture on MMLU: observed wording only.
        (P3_CSQA, "mmlu_anatomy", ("t0",), "observed"),
        (P3_CSQA, "mmlu_anatomy", ("t0++",), "observed"),
        # ARC joined with T0+ (GPT-3's evaluation sets).
        (P3_ARC, "bbl_winowhy", ("t0",), "other"),
        (P3_ARC, "bbl_winowhy", ("t0+",), "observed"),
        # Flan 2022 holds every Flan pattern; BoolQ with bool_q's is wording and data set.
        ("observed:flan:arc", "mmlu_anatomy", ("flan2022",), "observed"),
        ("observed:flan:bool_q", "boolq", ("flan2022",), "observed_dataset"),
        ("observed:flan:rte", "boolq", ("flan2022",), "observed"),
        ("observed:flan:bool_q", "boolq", ("t0++",), "other"),
        ("observed:flan", "boolq", ("flan2022",), "observed_dataset"),  # no origin given
        # Plain collection names and the wildcard: wording, no data set declared.
        (P3_SEMEVAL, "semeval", ("p3",), "observed"),
        ("observed:flan:bool_q", "boolq", ("*",), "observed"),
        ("observed:flan:bool_q", "boolq", (), "other"),
        ("unobserved", "boolq", ("t0++",), "unobserved"),
        ("style:flan", "boolq", ("flan2022",), "other"),
        ("default", "mmlu_anatomy", ("*",), "other"),
    ],
)
def test_classify(provenance, dataset, collections, want):
    assert tuning.classify(provenance, dataset, collections) == want
    group = scoring.group_for_model(provenance, collections)
    assert group == ("observed" if want == "observed_dataset" else want)
    assert scoring.observed_dataset(provenance, dataset, collections) == (
        want == "observed_dataset"
    )


def test_tuning_tables_agree_with_training_mixtures(shared_data_dir):
    """Every tuning's trained data sets are the mixture table's 'trained' rows, and every
    P3 data set a T0 tuning names is a PromptSource folder of the shared data."""
    from jaxrobust.tasks import training_mixtures as tm

    for name, row in tm.MIXTURES.items():
        trained = {d for d, s in row.items() if s == tm.TRAINED}
        if name in tuning.TUNINGS:
            assert tuning.TUNINGS[name].trained == trained, name
    assert tuning.T0_P3 < tuning.T0_PLUS_P3 < tuning.T0_PLUS_PLUS_P3
    assert len(tuning.T0_P3) == 38 and len(tuning.T0_PLUS_PLUS_P3) == 51
    for dataset in tuning.T0_PLUS_PLUS_P3:
        assert (shared_data_dir / "promptsource" / dataset / "templates.yaml").is_file(), dataset
    assert "sem_eval_2010_task_8" not in tuning.T0_PLUS_PLUS_P3


def test_observed_by_uses_the_text_and_the_data_set():
    from jaxrobust.tasks import training_mixtures as tm

    def t(provenance):
        return tmpl.Template("x", "q|||a", None, provenance, "test", "test")

    assert tm.observed_wording(t(P3_CSQA), "t0") and not tm.observed_by(t(P3_CSQA), "boolq", "t0")
    assert not tm.observed_wording(t(P3_SEMEVAL), "t0++")
    assert not tm.observed_by(t(P3_SEMEVAL), "semeval", "t0++")
    assert tm.observed_by(t(P3_BOOLQ), "boolq", "t0++")
    assert not tm.observed_by(t("observed:flan:rte"), "boolq", "flan2022")


def test_user_collection_is_declared_by_name(tmp_path):
    """`observed:<name>` fails as unknown until declared; a model spec's
    observed_collections declares it (the runners call `declare_names`)."""
    code = (
        "from jaxrobust.data import templates as tmpl, tuning\n"
        "try:\n"
        "    tmpl.Template('m1', 'q|||a', None, 'observed:mylab', 'me', 'me')\n"
        "except tmpl.TemplateError as e:\n"
        "    assert 'unknown collection' in str(e) and 'observed_collections' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('accepted an undeclared collection')\n"
        "tuning.declare_names(['*', 'mylab', 't0++'])\n"
        "t = tmpl.Template('m1', 'q|||a', None, 'observed:mylab:my_data', 'me', 'me')\n"
        "assert (t.collection, t.origin) == ('mylab', 'my_data')\n"
        "assert tuning.classify(t.provenance, 'mine', ('mylab',)) == 'observed'\n"
        "assert tuning.classify(t.provenance, 'mine', ('t0++',)) == 'other'\n"
        "tuning.declare(tuning.Tuning('mylab_v2', 'mylab', frozenset({'my_data'}),\n"
        "    frozenset({'mine'}), {'my_data': 'mine'}))\n"
        "assert tuning.classify(t.provenance, 'mine', ('mylab_v2',)) == 'observed_dataset'\n"
        "assert tuning.classify(t.provenance, 'other', ('mylab_v2',)) == 'observed'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_eval_declares_the_model_specs_collection(tmp_path):
    """A bank with observed:<name> loads in a TASK_MODULES module when the model spec
    names <name> in observed_collections, and the report counts it as observed."""
    mod = tmp_path / "my_lab_tasks.py"
    mod.write_text(
        "from jaxrobust.tasks import registry\n"
        "from jaxrobust.data import templates as tmpl\n"
        "ROWS = [{'id': f'x{i}', 'q': f'is {i} even', 'a': i % 2 == 0} for i in range(4)]\n"
        "def prepare(r):\n"
        "    return registry.Prepared({'q': r['q'], 'answer_index': int(r['a'])},\n"
        "        ['no', 'yes'], ['no', 'yes'][int(r['a'])], ['no', 'yes'], r['id'])\n"
        "SPEC = registry.TaskSpec(dataset='mylabq', format='qa', splits=('test',),\n"
        "    read=lambda split: ROWS, prepare=prepare, sample=ROWS[0], family='mylabq')\n"
        "T = [tmpl.Template(i, src + '|||{{ answer_choices[answer_index] }}', 'no ||| yes',\n"
        "        prov, 'test', 'test') for i, src, prov in [\n"
        "    ('lab1', '{{ q }}?', 'observed:mylab'), ('new1', 'Q: {{ q }}', 'unobserved')]]\n"
        "registry.register_with_mixtures(SPEC, T)\n"
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "jaxrobust.main",
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:mylabq:qa#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['jaxrobust.tasks', 'my_lab_tasks']",
        "--gin.evaluation.ModelSpec.observed_collections=('mylab',)",
    ]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((report.write_report(out, n_resamples=20) / "summary.json").read_text())
    groups = {t["template_id"]: t["group"] for t in saved["templates"]}
    assert groups == {"lab1": "observed", "new1": "unobserved"}


def test_observed_wording_apart_from_wording_and_data_set(tmp_path):
    """T0++ on BoolQ, by hand: 2 BoolQ P3 prompts (wording and data set), 1
    CommonsenseQA P3 prompt (wording only), 1 SemEval P3 prompt (not T0++'s text:
    'other'), 2 unobserved; 4 examples each."""
    spec = {"name": "t0pp", "observed_collections": ["t0++"]}
    gold = ["yes", "no", "yes", "no"]
    grid = {  # template -> (provenance, predictions)
        "pb1": (P3_BOOLQ, ["yes", "no", "yes", "no"]),  # 1
        "pb2": (P3_BOOLQ, ["yes", "no", "no", "no"]),  # 3/4
        "pc1": (P3_CSQA, ["yes", "yes", "yes", "yes"]),  # 1/2
        "ps1": (P3_SEMEVAL, ["no", "no", "no", "no"]),  # 1/2, not observed
        "u1": ("unobserved", ["no", "no", "yes", "yes"]),  # 1/2
        "u2": ("unobserved", ["no", "yes", "no", "yes"]),  # 0
    }
    for tid, (prov, pred) in grid.items():
        write_records(tmp_path, "t0pp", f"jr:boolq:qa:{tid}", prov, qa_rows(pred, gold), spec=spec)
    report_dir = report.write_report(tmp_path, n_resamples=50, seed=0)
    saved = json.loads((report_dir / "summary.json").read_text())
    groups = {t["template_id"]: t["group"] for t in saved["templates"]}
    assert groups == {
        "pb1": "observed",
        "pb2": "observed",
        "pc1": "observed",
        "ps1": "other",
        "u1": "unobserved",
        "u2": "unobserved",
    }
    (s,) = saved["summary"]
    assert (s["observed_n"], s["unobserved_n"], s["all_n"]) == (3, 2, 6)
    assert s["observed_mean"] == pytest.approx(3 / 4)  # (1 + 3/4 + 1/2) / 3
    assert s["unobserved_mean"] == 1 / 4
    assert s["gap"] == pytest.approx(1 / 2)
    assert s["observed_split"] == {
        "wording_and_dataset_n": 2,
        "wording_and_dataset_mean": 7 / 8,
        "wording_only_n": 1,
        "wording_only_mean": 1 / 2,
    }
    correct = np.array(
        [np.array(grid[t][1]) == gold for t in ("pb1", "pb2", "pc1", "u1", "u2")], float
    )
    ci = stats.bootstrap(correct, observed=np.array([1, 1, 1, 0, 0], bool), n_resamples=50, seed=0)
    assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci["gap"].low, ci["gap"].high)
    md = (report_dir / "summary.md").read_text()
    assert "## Observed wording and data set" in md
    assert "| t0pp | boolq/qa | 87.5 (2) | 50.0 (1) | 25.0 (2) |" in md
    # The CSV keeps its columns (the split is in summary.md and summary.json).
    assert "observed_split" not in (report_dir / "summary.csv").read_text()
