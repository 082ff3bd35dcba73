"""Reports: the summary's numbers against sklearn / numpy recomputations from the
records, the bootstrap against `metrics`, plots written, the CLI end to end."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from jaxrobust import evaluation
from jaxrobust.analysis import metrics, report
from jaxrobust.storage import files, records

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
PNG = b"\x89PNG\r\n\x1a\n"


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
    summary = json.loads((report_dir / "summary.json").read_text())["summary"]
    rows = {(s["model"], s["benchmark"]): s for s in summary}
    for model in ("small", "large"):
        for kind, bench in (("re", "toyre/mcqa"), ("qa", "toyqa/qa")):
            scores = []
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
    # The accuracy CI is metrics.two_level_bootstrap's on the correctness matrix.
    correct = np.array(
        [[p == g for p, g in zip(*truth[("small", "qa", k)], strict=True)] for k in range(6)]
    )
    ci = metrics.two_level_bootstrap(correct, observed=np.arange(6) < 3, n_resamples=200, seed=3)
    s = rows[("small", "toyqa/qa")]
    assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci["gap"].low, ci["gap"].high)
    # CSV holds the same numbers; Markdown prints them in percent.
    with open(report_dir / "summary.csv") as f:
        for row in csv.DictReader(f):
            assert float(row["gap"]) == pytest.approx(rows[(row["model"], row["benchmark"])]["gap"])
    md = (report_dir / "summary.md").read_text()
    s = rows[("large", "toyre/mcqa")]
    assert f"{100 * s['observed_mean']:.1f} ± {100 * s['observed_std']:.1f}" in md
    assert md.index("| small |") < md.index("| large |")  # ordered by size
    templates = (report_dir / "templates.csv").read_text().splitlines()
    assert len(templates) == 1 + 2 * 2 * 6


def test_plots(synthetic):
    out, _ = synthetic
    plots = report.write_report(out, n_resamples=50) / "plots"
    names = sorted(p.name for p in plots.glob("*.png"))
    assert "size__toy.png" in names
    for model in ("small", "large"):
        for bench in ("toyre_mcqa", "toyqa_qa"):
            assert f"templates__{model}__{bench}.png" in names
            assert f"repr__{model}__{bench}.png" in names
    assert all((plots / n).read_bytes().startswith(PNG) for n in names)


def test_f1_bootstrap_equals_accuracy_bootstrap_when_f1_is_accuracy():
    # Every gold label positive, predictions never negative: micro-F1 = accuracy.
    rng = np.random.default_rng(1)
    correct = rng.random((5, 30)) < 0.6
    tp, fp, fn = correct * 1.0, ~correct * 1.0, ~correct * 1.0
    observed = np.array([True, True, False, False, False])
    a = metrics.two_level_bootstrap(correct, observed=observed, n_resamples=300, seed=7)
    b = report.f1_bootstrap(tp, fp, fn, observed, n_resamples=300, seed=7)
    for key in ("mean", "observed", "unobserved", "gap"):
        np.testing.assert_allclose(b[key].distribution, a[key].distribution, atol=1e-12)
        assert b[key].estimate == pytest.approx(a[key].estimate)


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
        timeout=400,
    )
    done = subprocess.run(
        cmd + ["report", f"--output_dir={out}"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert "| tiny-t5 |" in done.stdout
    files = sorted((out / "records" / "tiny-t5").glob("*.jsonl"))
    assert len(files) == 8
    rep = out / "report"
    for name in ("summary.md", "summary.csv", "summary.json", "templates.md", "templates.csv"):
        assert (rep / name).stat().st_size > 0
    for bench in ("toyqa_qa", "toyre_re"):
        assert (rep / "plots" / f"templates__tiny-t5__{bench}.png").read_bytes().startswith(PNG)
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
