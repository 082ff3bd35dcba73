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
P3_CSQA = "observed:p3:cos_e/v1.11"  # T0 trained on CommonsenseQA as CoS-E
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
    assert len(tuning.T0_P3) == 38 and len(tuning.T0_PLUS_P3) == 48
    assert len(tuning.T0_PLUS_PLUS_P3) == 54
    assert "commonsense_qa" not in tuning.T0_PLUS_PLUS_P3  # t-zero's datasets.csv: CoS-E
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


@pytest.mark.heavy  # A subprocess importing every task (~30-80 s).
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


# ---------------------------------------------------------------- P3 observed sets


def test_bigbench_option_counts_are_the_datas(shared_data_dir):
    from jaxrobust.tasks import qa

    from jaxrobust.data import datasets

    counts = {len(r["choices"]) for t in qa.BIGBENCH_TASKS for r in datasets.read_bigbench(t)}
    assert tuple(sorted(counts)) == qa.BIGBENCH_OPTION_COUNTS


P3_MMLU = {
    "cos_e/v1.11": 3,
    "cosmos_qa": 1,
    "ai2_arc/ARC-Challenge": 5,
    "ai2_arc/ARC-Easy": 5,
    "openbookqa/main": 7,
    "hellaswag": 4,
}
P3_ANY_COUNT = {
    "cos_e/v1.11": 3,
    "ai2_arc/ARC-Challenge": 5,
    "ai2_arc/ARC-Easy": 5,
    "hellaswag": 1,
}


@pytest.mark.parametrize(
    "family, kept, skipped",
    [
        ("mmlu", P3_MMLU, {"unmapped_field": 68, "no_adapter": 30, "generates": 27, "options": 10}),
        (
            "bigbench",
            P3_ANY_COUNT,
            {"unmapped_field": 68, "no_adapter": 30, "generates": 27, "options": 21},
        ),
        (
            "re_mcqa",
            P3_ANY_COUNT,
            {"unmapped_field": 68, "no_adapter": 30, "generates": 27, "options": 21},
        ),
    ],
)
def test_p3_multiple_choice_counts(shared_data_dir, family, kept, skipped):
    """Per P3 data set of the T0 mixtures, the prompts each family keeps (160 prompts
    in 19 multiple-choice data sets), and why the rest are left out."""
    import collections

    from jaxrobust.tasks import qa

    from jaxrobust.data import promptsource_observed as p3

    loaded = qa.p3_observed(family)
    counts = loaded.counts()
    assert set(counts) == set(p3.MULTIPLE_CHOICE)
    assert {d: n for d, n in counts.items() if n} == kept
    assert dict(collections.Counter(s.reason for s in loaded.skipped)) == skipped
    assert len(loaded.templates) + len(loaded.skipped) == 160
    assert loaded.summary().startswith(f"kept {sum(kept.values())} of 160 prompts; skipped ")
    for t in loaded.templates:
        assert t.provenance == f"observed:p3:{t.origin}" and t.schema == f"hf:{t.origin}"
        assert t.origin in tuning.T0_PLUS_PLUS_P3
    # Only CoS-E's and Cosmos QA's prompts are in T0's own mixture; T0+ has them all.
    t0 = {t.origin for t in loaded.templates if tuning.TUNINGS["t0"].observes_wording(t.provenance)}
    assert t0 == {"cos_e/v1.11", "cosmos_qa"} & set(kept)
    assert all(tuning.TUNINGS["t0+"].observes_wording(t.provenance) for t in loaded.templates)


MMLU_SAMPLE_BY_HAND = [
    (
        "4fb13ac1-f770-45ea-b5d5-91ac50b0d609",  # ai2_arc/ARC-Easy 'i_am_hesitating'
        "I am hesitating between 4 options to answer the following question, which option "
        "should I choose?\nQuestion: Which of these numbers is prime?\nPossibilities:\n"
        "- 4\n- 6\n- 7\n- 9",
        "7",
        ("4", "6", "7", "9"),
    ),
    (
        "d90da519-0e2c-4f9b-a546-7cba82824eb2",  # ai2_arc/ARC-Easy 'heres_a_problem'
        "Here's a problem to solve: Which of these numbers is prime?\n\nAmong the 4 following "
        "options, which is the correct answer?\n\n- A: 4\n \n- B: 6\n \n- C: 7\n \n- D: 9",
        "C",
        ("A", "B", "C", "D"),
    ),
]


@pytest.mark.parametrize("tid, inputs, target, options", MMLU_SAMPLE_BY_HAND)
def test_p3_prompt_renders_mmlu_by_hand(shared_data_dir, tid, inputs, target, options):
    from jaxrobust.tasks import qa, registry

    template = next(t for t in qa.p3_observed("mmlu").templates if t.id == tid)
    spec = qa.mmlu_spec("anatomy")
    features = registry.to_features(spec, template, spec.sample, check=True)
    assert features["inputs"] == inputs
    assert (features["targets"], tuple(features["options"])) == (target, options)
    assert features["provenance"] == "observed:p3:ai2_arc/ARC-Easy"


@pytest.mark.heavy  # A subprocess importing every task (~30-80 s).
def test_add_p3_observed(shared_data_dir):
    """add_p3_observed: 25 prompts on every MMLU subject, 14 on each BIG-bench Lite task
    and each RE data set as multiple-choice QA; BoolQ keeps its own 10 P3 prompts."""
    code = (
        "import json, seqio\n"
        "from jaxrobust import tasks\n"
        "from jaxrobust.tasks import qa\n"
        "size = lambda m: len(seqio.get_mixture_or_task(m).tasks)\n"
        "groups = ['jr:mmlu:qa#observed_p3', 'jr:bbl_winowhy:qa#observed_p3',\n"
        "          'jr:semeval:mcqa#observed_p3', 'jr:fewrel:mcqa#observed_p3',\n"
        "          'jr:tacred:mcqa#observed_p3', 'jr:boolq:qa#observed_p3']\n"
        "before = {g: size(g) if g.startswith('jr:boolq') else 0 for g in groups}\n"
        "names = qa.add_p3_observed()\n"
        "after = {g: size(g) for g in groups}\n"
        "n = [x for x in names if x.startswith('jr:semeval:mcqa:')][0]\n"
        "ex = next(tasks.examples(n, 'test', limit=1))\n"
        "print(json.dumps([before, after, len(names), ex['provenance'], ex['options'][:2]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after, n_names, provenance, options = json.loads(done.stdout.splitlines()[-1])
    assert after == {
        "jr:mmlu:qa#observed_p3": 57 * 25,
        "jr:bbl_winowhy:qa#observed_p3": 14,
        "jr:semeval:mcqa#observed_p3": 14,
        "jr:fewrel:mcqa#observed_p3": 14,
        "jr:tacred:mcqa#observed_p3": 14,
        "jr:boolq:qa#observed_p3": 10,
    }
    assert before["jr:boolq:qa#observed_p3"] == 10  # BoolQ's own P3 prompts, unchanged
    assert n_names == 57 * 25 + 14 * 14 + 14 * 5  # semeval, fewrel, tacred, tacrev, retacred
    assert provenance.startswith("observed:p3:")
    assert options[0] == "audits causes waste"  # The MC-QA statements are the options.
