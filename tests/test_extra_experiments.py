"""Sun et al.'s two extra experiments: one-shot evaluation (EvalOptions.shots: a
demonstration rendered with the same template, from the train split or else drawn
from the evaluated split and left out of scoring) and observed but incorrect
instructions (Flan's instructions of other tasks; reported apart)."""

import json
import os
import pathlib
import random
import subprocess
import sys

import pytest
from test_report import qa_rows, write_records

from jaxrobust.analysis import report
from jaxrobust.data import misapplied
from jaxrobust.data import templates as tmpl
from jaxrobust.evaluation import EvalOptions, examples

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

ROWS = {
    split: [{"id": f"{split}{i}", "q": f"is {i} even", "a": i % 2 == 0} for i in range(n)]
    for split, n in (("train", 5), ("test", 6))
}
TEMPLATE = tmpl.Template(
    "t1", "Q: {{ q }}|||{{ answer_choices[answer_index] }}", "no ||| yes", "unobserved", "t", "t"
)


def _spec(splits):
    from jaxrobust.tasks import registry

    def prepare(r):
        label = ["no", "yes"][int(r["a"])]
        return registry.Prepared(
            {"q": r["q"], "answer_index": int(r["a"])}, ["no", "yes"], label, ["no", "yes"], r["id"]
        )

    return registry.TaskSpec(
        dataset="shotq",
        format="qa",
        splits=splits,
        read=lambda split: ROWS[split],
        prepare=prepare,
        sample=ROWS["test"][0],
        family="shotq",
    )


def test_demonstration_from_the_train_split():
    spec = _spec(("train", "test"))
    got = examples.with_demonstration(spec, TEMPLATE, "test", EvalOptions(shots=1, limit=4))
    i = random.Random("0:shotq:train").randrange(5)  # The seeded draw, by hand.
    demo = ROWS["train"][i]
    prefix = f"Q: {demo['q']}\n{'yes' if demo['a'] else 'no'}\n\n"
    assert [ex["example_id"] for ex in got] == ["test0", "test1", "test2", "test3"]
    assert [ex["inputs"] for ex in got] == [prefix + f"Q: is {k} even" for k in range(4)]
    for ex in got:  # The demonstration is protected text; the parts join to the input.
        assert examples.model_input(ex).text == ex["inputs"]
    # Same demonstration for another template of the data set, another with another seed.
    other = examples.with_demonstration(spec, TEMPLATE, "test", EvalOptions(shots=1, render_seed=3))
    j = random.Random("3:shotq:train").randrange(5)
    assert other[0]["inputs"].startswith(f"Q: {ROWS['train'][j]['q']}\n")


def test_demonstration_from_the_evaluated_split_is_not_scored():
    spec = _spec(("test",))
    got = examples.with_demonstration(spec, TEMPLATE, "test", EvalOptions(shots=1))
    i = random.Random("0:shotq:test").randrange(6)
    assert [ex["example_id"] for ex in got] == [f"test{k}" for k in range(6) if k != i]
    assert all(ex["inputs"].startswith(f"Q: is {i} even\n") for ex in got)
    with pytest.raises(ValueError, match="shots=2: expected 0 or 1"):
        EvalOptions(shots=2)


@pytest.mark.heavy  # A subprocess importing every task (~30-80 s).
def test_one_shot_eval_run(tmp_path):
    """SHOTS=1 on the toy task (test split only): 8 examples scored, none of them the
    demonstration, and the header says shots 1 (zero-shot headers have no such key)."""
    sys.path.insert(0, str(FIXTURES))
    import eval_tasks

    demo, source = examples.demonstration_record(eval_tasks.QA_SPEC, "test", 0)
    assert source == "test"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jaxrobust.main", "eval", "--gin_file=gin_configs/runs/eval.gin"]
    cmd += [
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa:toyqa_u1']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['jaxrobust.tasks', 'eval_tasks']",
        "--gin.SHOTS=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(FIXTURES)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (out / "records").rglob("*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header, rows = lines[0], [r for r in lines if r.get("kind") == "record"]
    assert header["config"]["shots"] == 1 and header["n_examples"] == len(rows) == 8
    assert demo["id"] not in {r["example_id"] for r in rows}


# ---------------------------------------------------------------- observed but incorrect


def test_flan_incorrect_counts_and_a_rendering(shared_data_dir):
    loaded = misapplied.flan_incorrect("question", "choices")
    assert loaded.counts() == {"sst2": 8, "imdb_reviews": 9, "ag_news_subset": 6, "cola": 8}
    assert loaded.summary() == "kept 31 of 40 patterns; skipped 7 generates, 2 unmapped_field"
    t = next(t for t in loaded.templates if t.id == "flan2x_sst2_0")
    assert t.provenance == "incorrect:flan:sst2" and t.origin == "sst2"
    r = tmpl.render(
        t, {"question": "Which is prime?", "choices": ["4", "6", "7"], "answer_index": 2}
    )
    assert r.inputs == (
        "Review:\nWhich is prime?\nIs this movie review sentence negative or positive?\n"
        "OPTIONS:\n- 4\n- 6\n- 7\nThe answer is:"
    )
    assert (r.target, r.options) == ("7", ("4", "6", "7"))


def test_add_flan_incorrect(shared_data_dir):
    code = (
        "import json, seqio\n"
        "from jaxrobust import tasks\n"
        "from jaxrobust.tasks import qa\n"
        "qa.add_flan_incorrect()\n"
        "size = lambda m: len(seqio.get_mixture_or_task(m).tasks)\n"
        "print(json.dumps([size('jr:mmlu:qa#incorrect_flan'),\n"
        "                  size('jr:bbl_winowhy:qa#incorrect_flan')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [57 * 31, 31]


def test_report_keeps_incorrect_instructions_apart(tmp_path):
    """Flan-T5 by hand: 2 observed, 2 observed-but-incorrect (Flan's SST-2 wording),
    2 unobserved; the incorrect ones move neither mean, and are shown apart."""
    gold = ["yes", "no", "yes", "no"]
    grid = {
        "o1": ("observed:flan:bool_q", ["yes", "no", "yes", "no"]),  # 1
        "o2": ("observed:flan:rte", ["yes", "no", "yes", "yes"]),  # 3/4
        "x1": ("incorrect:flan:sst2", ["no", "no", "no", "no"]),  # 1/2
        "x2": ("incorrect:flan:cola", ["no", "yes", "no", "yes"]),  # 0
        "u1": ("unobserved", ["yes", "yes", "yes", "no"]),  # 3/4
        "u2": ("unobserved", ["no", "no", "yes", "no"]),  # 3/4
    }
    for model, collections in (("flan", ["flan2022"]), ("t0pp", ["t0++"])):
        spec = {"name": model, "observed_collections": collections}
        for tid, (prov, pred) in grid.items():
            write_records(
                tmp_path, model, f"jr:boolq:qa:{tid}", prov, qa_rows(pred, gold), spec=spec
            )
    report_dir = report.write_report(tmp_path, n_resamples=20)
    saved = {
        s["model"]: s for s in json.loads((report_dir / "summary.json").read_text())["summary"]
    }
    s = saved["flan"]
    assert (s["observed_n"], s["observed_mean"]) == (2, 7 / 8)
    assert (s["unobserved_n"], s["unobserved_mean"]) == (2, 3 / 4)
    assert s["observed_incorrect"] == {
        "n": 2,
        "mean": 1 / 4,
        "tuned_on_n": 2,
        "tuned_on_mean": 1 / 4,
    }
    # T0++ was tuned on none of these texts.
    assert saved["t0pp"]["observed_incorrect"]["tuned_on_n"] == 0
    assert saved["t0pp"]["observed_n"] == 0
    md = (report_dir / "summary.md").read_text()
    assert "## Observed but incorrect instructions" in md
    assert "| flan | boolq/qa | 87.5 | 25.0 (2) | 75.0 |" in md
    groups = {
        t["template_id"]: t["group"]
        for t in json.loads((report_dir / "summary.json").read_text())["templates"]
        if t["model"] == "flan"
    }
    assert groups["x1"] == groups["x2"] == "other"
