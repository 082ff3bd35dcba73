"""Reports: the summary's numbers against sklearn / numpy recomputations from the
records and hand-computed grids, the intervals from `stats.bootstrap`, plots decoded,
the CLI end to end, and the report's import path free of JAX."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image
from scipy import stats as sps
from sklearn.metrics import accuracy_score, f1_score

from jaxrobust import evaluation
from jaxrobust.analysis import metrics, report, stats
from jaxrobust.storage import files, records

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def assert_png(path, width: int, height: int) -> None:
    """A decodable PNG of the given size in pixels that is not one flat colour."""
    pixels = image.imread(path)  # [H, W, RGBA] floats in [0, 1].
    assert pixels.shape == (height, width, 4), path
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 2, f"{path} is blank"


def write_records(out, model, task, provenance, rows, pooled=None, spec=None):
    """A record file holding `rows` (dicts with the record fields the report reads)."""
    _, dataset, fmt, template = task.split(":")
    header = {
        "kind": "header",
        "format_version": records.FORMAT_VERSION,
        "task": task,
        "template_id": template,
        "provenance": provenance,
        "dataset": dataset,
        "format": fmt,
        "n_examples": len(rows),
        "data_fingerprint": "x",
        "config": {"model": model},
    }
    path = records.records_path(out, model, task)
    evaluation.evaluate_file(path, header, rows, lambda chunk: (chunk, pooled), len(rows))
    if spec is not None:
        files.write_json(path.parent / "model.json", spec)


def re_rows(pred, gold, neg="no_relation"):
    return [
        {
            "example_id": f"e{i}",
            "predicted_label": p,
            "gold_label": g,
            "negative_label": neg,
            "correct": p == g,
            "truncated": i == 0,
        }
        for i, (p, g) in enumerate(zip(pred, gold, strict=True))
    ]


RELS = ["a", "b", "c"]


@pytest.fixture()
def synthetic(tmp_path):
    """Two models x one RE benchmark (with invalid answers) x 3 observed + 3 unobserved
    templates, and a QA benchmark; random but seeded outcomes."""
    rng = np.random.default_rng(0)
    gold = list(rng.choice(RELS + ["no_relation"], 40))
    qa_gold = list(rng.choice(["yes", "no"], 30))
    truth = {}
    for m, (model, size) in enumerate([("small", 0.08), ("large", 0.8)]):
        spec = {"name": model, "series": "toy", "params_b": size, "observed_collections": ["flan"]}
        for k in range(6):
            prov = "observed:flan" if k < 3 else "unobserved"
            pred = [
                g
                if rng.random() < 0.5 + 0.1 * m - 0.05 * (k >= 3)
                else rng.choice(RELS + ["no_relation", "invalid"])
                for g in gold
            ]
            pooled = rng.normal(size=4) + (k >= 3)
            write_records(
                tmp_path, model, f"jr:toyre:mcqa:t{k}", prov, re_rows(pred, gold), pooled, spec
            )
            truth[(model, "re", k)] = (pred, gold)
            qpred = [g if rng.random() < 0.7 else "maybe" for g in qa_gold]
            write_records(
                tmp_path,
                model,
                f"jr:toyqa:qa:q{k}",
                prov,
                re_rows(qpred, qa_gold, neg=""),
                pooled,
                spec,
            )
            truth[(model, "qa", k)] = (qpred, qa_gold)
    return tmp_path, truth


def test_summary_equals_sklearn(synthetic):
    out, truth = synthetic
    report_dir = report.write_report(out, n_resamples=200, seed=3)
    saved = json.loads((report_dir / "summary.json").read_text())
    rows = {(s["model"], s["benchmark"]): s for s in saved["summary"]}
    by_model = {}  # benchmark -> model -> [6] template scores
    for model in ("small", "large"):
        for kind, bench in (("re", "toyre/mcqa"), ("qa", "toyqa/qa")):
            scores = by_model.setdefault(bench, {}).setdefault(model, [])
            for k in range(6):
                pred, gold = truth[(model, kind, k)]
                if kind == "re":
                    # Invalid answers count as false positives: score them as a label.
                    scores.append(f1_score(gold, pred, labels=RELS + ["invalid"], average="micro"))
                    assert scores[-1] == pytest.approx(
                        metrics.re_micro_f1(
                            pred, gold, positive_labels=RELS, negative_label="no_relation"
                        ).f1
                    )
                else:
                    scores.append(accuracy_score(gold, pred))
            s = rows[(model, bench)]
            obs, unobs = np.array(scores[:3]), np.array(scores[3:])
            assert s["observed_mean"] == pytest.approx(obs.mean(), abs=1e-12)
            assert s["observed_std"] == pytest.approx(obs.std(ddof=1), abs=1e-12)
            assert s["unobserved_mean"] == pytest.approx(unobs.mean(), abs=1e-12)
            assert s["unobserved_std"] == pytest.approx(unobs.std(ddof=1), abs=1e-12)
            assert s["gap"] == pytest.approx(obs.mean() - unobs.mean(), abs=1e-12)
            assert s["gap_ci_low"] <= s["gap"] <= s["gap_ci_high"]
            assert s["drop_rate"] == pytest.approx(1 - unobs.mean() / obs.mean(), abs=1e-12)
            assert (s["all_n"], s["all_min"], s["all_max"]) == (6, min(scores), max(scores))
    # Model rankings: each template ranks the two models; scipy's tau-b per template
    # pair (NaN where a template ties them), averaged over the defined pairs.
    for r in saved["rankings"]:
        large, small = (by_model[r["benchmark"]][m] for m in ("large", "small"))
        taus = [  # Template i ranks (large, small) as [large[i], small[i]].
            sps.kendalltau([large[i], small[i]], [large[j], small[j]]).statistic
            for i in range(6)
            for j in range(i + 1, 6)
        ]
        assert r["models"] == ["large", "small"] and r["n_templates"] == 6
        assert r["mean_kendall_tau"] == pytest.approx(np.nanmean(taus), abs=1e-12)
    assert sorted(r["benchmark"] for r in saved["rankings"]) == ["toyqa/qa", "toyre/mcqa"]
    # The intervals are stats.bootstrap's: on the correctness matrix for accuracy, on
    # the per-example TP/FP/FN (recounted here from the labels) for micro-F1.
    observed = np.arange(6) < 3
    correct = np.array(
        [[p == g for p, g in zip(*truth[("small", "qa", k)], strict=True)] for k in range(6)]
    )
    ci = stats.bootstrap(correct, observed=observed, n_resamples=200, seed=3)["gap"]
    s = rows[("small", "toyqa/qa")]
    assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci.low, ci.high)
    counts = [[], [], []]
    for k in range(6):
        pred, gold = map(np.array, truth[("small", "re", k)])
        right, gold_pos = pred == gold, gold != "no_relation"
        counts[0].append(right & gold_pos)
        counts[1].append(~right & (pred != "no_relation"))
        counts[2].append(~right & gold_pos)
    boot = {"observed": observed, "n_resamples": 200, "seed": 3}
    ci = stats.bootstrap(tuple(map(np.array, counts)), statistic=stats.MICRO_F1, **boot)["gap"]
    s = rows[("small", "toyre/mcqa")]
    assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci.low, ci.high)
    # CSV holds the same numbers; Markdown prints them in percent.
    with open(report_dir / "summary.csv") as f:
        for row in csv.DictReader(f):
            assert float(row["gap"]) == pytest.approx(rows[(row["model"], row["benchmark"])]["gap"])
    md = (report_dir / "summary.md").read_text()
    s = rows[("large", "toyre/mcqa")]
    assert f"{100 * s['observed_mean']:.1f} ± {100 * s['observed_std']:.1f}" in md
    assert (
        f"| large | toyre/mcqa | 6 | {100 * s['all_min']:.1f} | {100 * s['all_max']:.1f} | "
        f"{100 * s['drop_rate']:.1f} | {100 * s['consistency']:.1f} | {s['fleiss_kappa']:.2f} |"
    ) in md
    tau = {r["benchmark"]: r["mean_kendall_tau"] for r in saved["rankings"]}["toyqa/qa"]
    assert f"| toyqa/qa | large, small | 6 | {tau:.2f} |" in md
    assert md.index("| small |") < md.index("| large |")  # ordered by size
    templates = (report_dir / "templates.csv").read_text().splitlines()
    assert len(templates) == 1 + 2 * 2 * 6


def test_plots(synthetic):
    out, _ = synthetic
    plots = report.write_report(out, n_resamples=50) / "plots"
    names = sorted(p.name for p in plots.glob("*.png"))
    assert len(names) == 1 + 2 * 2 * 2
    # Sizes in pixels at 100 dpi: figsize (5, 3.5), (max(4, 0.5 * 6 + 2), 3.5), (4.5, 3.5).
    assert_png(plots / "size__toy.png", 500, 350)
    for model in ("small", "large"):
        for bench in ("toyre_mcqa", "toyqa_qa"):
            assert_png(plots / f"templates__{model}__{bench}.png", 500, 350)
            assert_png(plots / f"repr__{model}__{bench}.png", 450, 350)


def qa_rows(pred, gold, ids=None, truncated=()):
    return [
        {
            "example_id": i,
            "predicted_label": p,
            "gold_label": g,
            "negative_label": "",
            "correct": p == g,
            "truncated": i in truncated,
        }
        for i, p, g in zip(ids or [f"e{j}" for j in range(len(gold))], pred, gold, strict=True)
    ]


def test_benchmark_of_several_data_sets_is_the_macro_mean(tmp_path):
    """mmlu_a (4 examples) and mmlu_b (2) pool into mmlu/qa: a template's score is the
    mean of its two accuracies, not the accuracy over the 6 pooled examples."""
    spec = {"name": "m", "observed_collections": ["flan"]}
    gold_a, gold_b = ["A", "B", "C", "D"], ["A", "B"]
    grid = {  # template -> (provenance, predictions on mmlu_a, predictions on mmlu_b)
        "o1": ("observed:flan", ["A", "B", "C", "A"], ["A", "A"]),  # 3/4, 1/2 -> 5/8
        "o2": ("observed:flan", ["A", "B", "C", "D"], ["B", "A"]),  # 1, 0 -> 1/2
        "u1": ("unobserved", ["A", "A", "A", "A"], ["A", "B"]),  # 1/4, 1 -> 5/8
        "u2": ("unobserved", ["B", "A", "D", "C"], ["A", "A"]),  # 0, 1/2 -> 1/4
        "s1": ("style:flan", ["A", "B", "A", "A"], ["B", "B"]),  # 1/2, 1/2 -> 1/2
    }
    for tid, (prov, pa, pb) in grid.items():
        rows_a = qa_rows(pa, gold_a, truncated={"e0"} if tid == "o1" else ())
        write_records(tmp_path, "m", f"jr:mmlu_a:qa:{tid}", prov, rows_a, spec=spec)
        write_records(tmp_path, "m", f"jr:mmlu_b:qa:{tid}", prov, qa_rows(pb, gold_b), spec=spec)
    report_dir = report.write_report(tmp_path, n_resamples=100, seed=0)
    saved = json.loads((report_dir / "summary.json").read_text())
    templates = {t["template_id"]: t for t in saved["templates"] if t["benchmark"] == "mmlu/qa"}
    want = {"o1": 5 / 8, "o2": 1 / 2, "u1": 5 / 8, "u2": 1 / 4, "s1": 1 / 2}
    assert {t: templates[t]["score"] for t in want} == want
    assert {t["benchmark"] for t in templates.values()} == {"mmlu/qa"}
    assert {t["n_examples"] for t in templates.values()} == {6}
    assert templates["o1"]["truncated"] == 1 / 6
    assert templates["s1"]["group"] == "other"
    # Pooled into one data set (Sun et al.'s MMLU): correct answers over all 6 examples.
    flat = {
        t["template_id"]: t["score"]
        for t in saved["templates"]
        if t["benchmark"] == "mmlu/qa pooled"
    }
    assert flat == {"o1": 4 / 6, "o2": 4 / 6, "u1": 3 / 6, "u2": 1 / 6, "s1": 3 / 6}
    s, p = saved["summary"]
    assert (s["benchmark"], p["benchmark"]) == ("mmlu/qa", "mmlu/qa pooled")
    assert p["observed_mean"] == pytest.approx(2 / 3) and p["unobserved_mean"] == 1 / 3
    assert p["gap"] == pytest.approx(1 / 3)
    # Same examples, same resamples: the pooled benchmark's CI and test are the macro's.
    assert (p["gap_ci_low"], p["paired_p"]) == (s["gap_ci_low"], s["paired_p"])
    assert (s["observed_n"], s["unobserved_n"]) == (2, 2)
    assert s["observed_mean"] == 9 / 16 and s["unobserved_mean"] == 7 / 16
    assert s["observed_std"] == pytest.approx(np.std([5 / 8, 1 / 2], ddof=1))
    assert s["gap"] == 1 / 8
    assert s["drop_rate"] == pytest.approx(2 / 9)  # 1 - (7/16) / (9/16)
    assert (s["all_n"], s["all_min"], s["all_max"]) == (5, 1 / 4, 5 / 8)
    assert s["all_mean"] == pytest.approx(np.mean(list(want.values())))
    # Example-level statistics pool the 6 examples of both data sets, in data-set order.
    assert s["aligned"] is True
    assert s["consistency"] == 0.0  # No example gets one answer from all 5 templates.
    correct = np.array(
        [
            np.r_[np.array(pa) == gold_a, np.array(pb) == gold_b]
            for tid, (_, pa, pb) in sorted(grid.items())
            if tid != "s1"
        ]
    )
    observed = np.array([True, True, False, False])
    ci = stats.bootstrap(correct, observed=observed, n_resamples=100, seed=0)["gap"]
    assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci.low, ci.high)
    test = stats.paired_permutation_test(correct, observed, seed=0)
    assert s["paired_p"] == test.p_value


def test_report_command_loads_no_jax(synthetic):
    """`python -m jaxrobust.main report` imports neither JAX nor the task registry."""
    out, _ = synthetic
    code = (
        "import sys\n"
        "from jaxrobust import main\n"
        f"assert main.main(['report', '--output_dir={out}', '--n_resamples=20']) == 0\n"
        "heavy = ('jax', 'jaxlib', 'flax', 'tensorflow', 'seqio', 'gin')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| small |" in done.stdout


def test_corrupt_record_file_is_named(synthetic):
    out, _ = synthetic
    path = records.records_path(out, "small", "jr:toyqa:qa:q2")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(records.RecordsError) as e:
        report.write_report(out)
    assert str(path) in str(e.value)


def test_cli_end_to_end(tmp_path):
    """eval (tiny T5, 2 tasks x (2 observed + 2 unobserved) templates) then report."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(FIXTURES)}
    cmd = [sys.executable, "-m", "jaxrobust.main"]
    subprocess.run(
        cmd
        + [
            "eval",
            "--gin_file=gin_configs/runs/eval.gin",
            "--gin_file=gin_configs/tiny.gin",
            "--gin.MIXTURES=['jr:toyqa:qa#all', 'jr:toyre:re#all']",
            f"--gin.OUTPUT_DIR='{out}'",
            "--gin.TASK_MODULES=['eval_tasks']",
            "--gin.evaluation.ModelSpec.seed=2",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        cmd + ["report", f"--output_dir={out}"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "| tiny-t5 |" in done.stdout
    files = sorted((out / "records" / "tiny-t5").glob("*.jsonl"))
    assert len(files) == 8
    rep = out / "report"
    for name in ("summary.md", "summary.csv", "summary.json", "templates.md", "templates.csv"):
        assert (rep / name).stat().st_size > 0
    for bench in ("toyqa_qa", "toyre_re"):
        assert_png(rep / "plots" / f"templates__tiny-t5__{bench}.png", 400, 350)
    # Recompute every summary number from the record lines themselves.
    per = {}
    for path in files:
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        head, recs = lines[0], [x for x in lines if x["kind"] == "record"]
        pred = [r["predicted_label"] for r in recs]
        gold = [r["gold_label"] for r in recs]
        if head["format"] == "qa":
            score = accuracy_score(gold, pred)
        else:
            labels = sorted({*gold, *pred} - {"no_relation"})
            score = f1_score(gold, pred, labels=labels, average="micro", zero_division=0)
        bench = f"{head['dataset']}/{head['format']}"
        per.setdefault(bench, {}).setdefault(head["provenance"] == "unobserved", []).append(score)
    summary = json.loads((rep / "summary.json").read_text())["summary"]
    assert {s["benchmark"] for s in summary} == set(per)
    for s in summary:
        obs, unobs = np.array(per[s["benchmark"]][False]), np.array(per[s["benchmark"]][True])
        assert len(obs) == len(unobs) == 2
        assert s["observed_mean"] == pytest.approx(obs.mean(), abs=1e-12)
        assert s["unobserved_mean"] == pytest.approx(unobs.mean(), abs=1e-12)
        assert s["observed_std"] == pytest.approx(obs.std(ddof=1), abs=1e-12)
        assert s["gap"] == pytest.approx(obs.mean() - unobs.mean(), abs=1e-12)


# ---------------------------------------------------------------------------
# Official metrics and truncation.
# ---------------------------------------------------------------------------


def _answers(path) -> dict[str, str]:
    """An official SemEval answer file (`<id>\\t<label>` lines) as a dict."""
    lines = pathlib.Path(path).read_text().splitlines()
    return dict(line.split("\t") for line in lines if line.strip())


def test_semeval_headline_is_the_official_score(tmp_path, shared_data_dir):
    """SemEval's template scores are the official score (macro-F1 over the nine
    relations, direction counted, Other excluded), micro-F1 beside them. The records
    are written as a run writes them, from the official scorer's test vector 1 (its 10
    unanswered examples as answers matching no option); the test writes each template's
    predictions in the official answer-file format, scores them with the scorer port,
    and finds the report's numbers; vector 1's is the published 64.09."""
    from jaxrobust.analysis import scoring, semeval_scorer

    vectors = shared_data_dir / "semeval2010_task8" / "scorer_vectors"
    key, proposed = (
        _answers(vectors / "answer_key1.txt"),
        _answers(vectors / "proposed_answer1.txt"),
    )
    flipped = {"(e1,e2)": "(e2,e1)", "(e2,e1)": "(e1,e2)"}
    grid = {  # template -> (provenance, predictions by id)
        "o1": ("observed:flan", {i: proposed.get(i, "invalid") for i in key}),
        "u1": (  # Every third relation answered in the wrong direction.
            "unobserved",
            {
                i: g[:-7] + flipped[g[-7:]] if g != "Other" and n % 3 == 0 else g
                for n, (i, g) in enumerate(key.items())
            },
        ),
    }
    spec = {"name": "m", "observed_collections": ["flan"]}
    for tid, (prov, pred) in grid.items():
        rows = [
            {
                "example_id": f"semeval-{i}",
                "predicted_label": pred[i],
                "gold_label": g,
                "negative_label": "Other",
                "correct": pred[i] == g,
                "truncated": False,
                "protected_cut": False,
            }
            for i, g in key.items()
        ]
        write_records(tmp_path, "m", f"jr:semeval:re:{tid}", prov, rows, spec=spec)
    report_dir = report.write_report(tmp_path, n_resamples=200, seed=0)
    with open(report_dir / "templates.csv") as f:
        templates = {r["template_id"]: r for r in csv.DictReader(f)}
    official = {}
    for tid in grid:
        # A run's predictions in the official format: answers naming no label are left
        # out (unanswered), as the scorer's README says for missing predictions.
        file = records.read_records(records.records_path(tmp_path, "m", f"jr:semeval:re:{tid}"))
        answered = [r for r in file.records if r["predicted_label"] in semeval_scorer.LABELS]
        (tmp_path / f"{tid}.txt").write_text(
            "".join(f"{r['example_id'][8:]}\t{r['predicted_label']}\n" for r in answered)
        )
        (tmp_path / "key.txt").write_text(
            "".join(f"{r['example_id'][8:]}\t{r['gold_label']}\n" for r in file.records)
        )
        result = semeval_scorer.score_files(tmp_path / f"{tid}.txt", tmp_path / "key.txt")
        official[tid] = result.official_score
        assert templates[tid]["metric"] == "semeval_official"
        assert 100 * float(templates[tid]["score"]) == pytest.approx(official[tid], abs=1e-9)
        # Micro-F1 beside it: sklearn over the 18 directed relations plus invalid answers.
        gold = [r["gold_label"] for r in file.records]
        pred = [r["predicted_label"] for r in file.records]
        labels = [lab for lab in semeval_scorer.LABELS if lab != "Other"] + ["invalid"]
        micro = f1_score(gold, pred, labels=labels, average="micro")
        assert float(templates[tid]["micro_f1"]) == pytest.approx(micro, abs=1e-12)
    published = (vectors / "result_scores1.txt").read_text()
    assert f"macro-averaged F1 = {official['o1']:.2f}%" in published  # 64.09
    assert f"{100 * float(templates['o1']['micro_f1']):.2f}" == "50.00"
    saved = json.loads((report_dir / "summary.json").read_text())
    [s] = saved["summary"]
    assert s["metric"] == "semeval_official"
    assert 100 * s["observed_mean"] == pytest.approx(official["o1"], abs=1e-9)
    assert 100 * s["gap"] == pytest.approx(official["o1"] - official["u1"], abs=1e-9)
    assert s["micro_f1_observed_mean"] == float(templates["o1"]["micro_f1"])
    assert s["micro_f1_gap"] == pytest.approx(
        float(templates["o1"]["micro_f1"]) - float(templates["u1"]["micro_f1"])
    )
    assert s["gap_ci_low"] <= s["gap"] <= s["gap_ci_high"]
    with open(report_dir / "summary.csv") as f:
        [row] = list(csv.DictReader(f))
    assert {"micro_f1_observed_mean", "micro_f1_gap"} <= set(row)
    md = (report_dir / "summary.md").read_text()
    assert "official SemEval-2010 Task 8 score" in md and "| 64.1 |" in md
    # The bootstrap's macro-F1 statistic is the port's score on the data as given.
    outs = [
        scoring.outcomes(records.read_records(p))
        for p in sorted(records.model_dir(tmp_path, "m").glob("*.jsonl"))
    ]
    values, statistic = scoring.bootstrap_values(outs)
    point = stats.bootstrap(values, statistic=statistic, n_resamples=10)
    assert 100 * point["mean"].estimate == pytest.approx(np.mean(list(official.values())))


def test_tacred_micro_f1_note_says_how_invalid_answers_count(tmp_path):
    rows = re_rows(["per:title", "invalid", "no_relation"], ["per:title", "per:age", "per:age"])
    for tid, prov in (("o1", "observed:flan"), ("u1", "unobserved")):
        write_records(tmp_path, "m", f"jr:tacred:mcqa:{tid}", prov, rows, spec={"name": "m"})
    report_dir = report.write_report(tmp_path, n_resamples=20, seed=0)
    md = (report_dir / "summary.md").read_text()
    assert "tacred/mcqa: micro-F1 over the positive relations (the negative label excluded" in md
    assert "an answer matching no option counts as a wrong relation" in md
    [s] = json.loads((report_dir / "summary.json").read_text())["summary"]
    assert s["observed_mean"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))  # TP 1, FP 1, FN 2


def test_truncation_shares_and_the_gap_without_truncated_examples(tmp_path):
    """Hand grid: 2 observed + 2 unobserved templates on 6 QA examples; example e0 is
    shortened under o1, e1 under u2 (its protected text cut too): the gap over the 4
    examples no template shortened is computed by hand."""
    gold = ["yes", "no", "yes", "no", "yes", "no"]
    grid = {  # template -> (provenance, correct per example)
        "o1": ("observed:flan", [1, 1, 1, 1, 0, 1]),
        "o2": ("observed:flan", [0, 1, 1, 0, 1, 1]),
        "u1": ("unobserved", [1, 0, 1, 0, 0, 1]),
        "u2": ("unobserved", [1, 0, 0, 1, 0, 0]),
    }
    flags = {"o1": {"e0": (True, False)}, "u2": {"e1": (True, True)}}
    spec = {"name": "m", "observed_collections": ["flan"]}
    for tid, (prov, correct) in grid.items():
        pred = [
            g if c else {"yes": "no", "no": "yes"}[g] for g, c in zip(gold, correct, strict=True)
        ]
        rows = qa_rows(pred, gold)
        for r in rows:
            r["truncated"], r["protected_cut"] = flags.get(tid, {}).get(
                r["example_id"], (False, False)
            )
        write_records(tmp_path, "m", f"jr:toyqa:qa:{tid}", prov, rows, spec=spec)
    report_dir = report.write_report(tmp_path, n_resamples=20, seed=0)
    saved = json.loads((report_dir / "summary.json").read_text())
    [s] = saved["summary"]
    assert s["truncated_share"] == 2 / 6 and s["protected_cut_share"] == 1 / 6
    assert s["n_untruncated"] == 4
    # e2..e5: observed 3/4 and 3/4, unobserved 2/4 and 1/4.
    assert s["gap_untruncated"] == pytest.approx((3 / 4 + 3 / 4) / 2 - (2 / 4 + 1 / 4) / 2)
    assert s["gap"] == pytest.approx((5 / 6 + 4 / 6) / 2 - (3 / 6 + 2 / 6) / 2)
    templates = {t["template_id"]: t for t in saved["templates"]}
    assert (templates["o1"]["truncated"], templates["o1"]["protected_cut"]) == (1 / 6, 0.0)
    assert (templates["u2"]["truncated"], templates["u2"]["protected_cut"]) == (1 / 6, 1 / 6)
    md = (report_dir / "summary.md").read_text()
    assert "## Truncated inputs" in md and "| m | toyqa/qa | 33.3 | 16.7 | 33.3 | 37.5 | 4 |" in md
    assert "| truncated (%) | protected cut (%) |" in (report_dir / "templates.md").read_text()
