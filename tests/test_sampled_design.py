"""Sampled designs end to end (issue 17): `EvalOptions.design_budget` scores only the cells
`design.sample_cells` chooses, resumably, with the design in the headers; the report marks
what it estimates from them (`analysis/prompteval.py`) as estimated, with the budget."""

import json

import numpy as np
import pytest

from jaxrobust import evaluation
from jaxrobust.evaluation import design, guards
from jaxrobust.storage import records

TASKS = [f"jr:world_type:qa:type_{t}" for t in ("o1", "o2", "p1", "p2", "h1", "h2")]
SPEC = evaluation.ModelSpec(name="tiny", preset="tiny", tokenizer="byte")


def _options(**kw):
    return evaluation.EvalOptions(
        limit=8, batch_size=8, max_input_len=128, progress=False, chunk_size=2, **kw
    )


def _files(out):
    return {t: records.records_path(out, "tiny", t) for t in TASKS}


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    out = tmp_path_factory.mktemp("sampled")
    evaluation.run([SPEC], TASKS, str(out), _options(design_budget=0.25, design_seed=3))
    return out


def test_sampled_run_scores_exactly_the_designs_cells(sampled):
    # 6 templates x 8 examples, 25%: 12 cells, 2 per template, every example seen.
    mask = design.sample_cells(6, 8, 0.25, 3)
    assert mask.sum() == 12 and mask.any(0).all() and (mask.sum(1) == 2).all()
    all_ids = None
    seen = np.zeros((6, 8), bool)
    for row, task in enumerate(sorted(TASKS)):
        f = records.read_records(_files(sampled)[task])
        assert f.header["config"]["design"] == {"budget": 0.25, "seed": 3}
        assert f.header["grid"] == {"templates": 6, "examples": 8, "cells": 12}
        assert f.header["n_examples"] == len(f.records) == 2
        if all_ids is None:  # The full example order, from a full run's task examples.
            from jaxrobust.evaluation import examples as examples_lib

            full = examples_lib.task_examples(task, _options())
            all_ids = [e["example_id"] for e in full]
        for r in f.records:
            seen[row, all_ids.index(r["example_id"])] = True
    assert (seen == mask).all()


def test_sampled_run_resumes_and_skips_byte_identically(sampled, tmp_path):
    before = {t: p.read_bytes() for t, p in _files(sampled).items()}
    status = evaluation.run(
        [SPEC], TASKS, str(sampled), _options(design_budget=0.25, design_seed=3)
    )
    assert set(status["tiny"].values()) == {"skipped"}
    # A file cut after its first chunk (one of two records) is finished, byte-identical.
    path = _files(sampled)[TASKS[0]]
    lines = path.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"kind":"chunk"' in line)
    path.with_name(path.name + ".partial").write_bytes(b"".join(lines[: cut + 1]))
    path.unlink()
    status = evaluation.run(
        [SPEC], TASKS, str(sampled), _options(design_budget=0.25, design_seed=3)
    )
    assert status["tiny"][TASKS[0]] == "resumed"
    assert {t: p.read_bytes() for t, p in _files(sampled).items()} == before


def test_full_and_sampled_runs_do_not_share_a_folder(sampled, tmp_path):
    with pytest.raises(guards.RunIdentityError, match="design: .*None \\(the full grid\\)"):
        evaluation.run([SPEC], TASKS, str(sampled), _options())
    with pytest.raises(guards.RunIdentityError, match="design"):
        evaluation.run([SPEC], TASKS, str(sampled), _options(design_budget=0.25, design_seed=4))
    evaluation.run([SPEC], TASKS[:2], str(tmp_path), _options())
    with pytest.raises(guards.RunIdentityError, match="design: absent there"):
        evaluation.run([SPEC], TASKS[:2], str(tmp_path), _options(design_budget=0.5))
    # A full run's headers carry no design (full-grid files are unchanged).
    header = records.read_records(_files(tmp_path)[TASKS[0]]).header
    assert "design" not in header["config"] and "grid" not in header


@pytest.mark.parametrize("budget", [0, 1.5, True, "0.05"])
def test_a_bad_budget_is_refused_naming_the_setting(budget):
    with pytest.raises(ValueError, match="DESIGN_BUDGET"):
        evaluation.EvalOptions(design_budget=budget)
    with pytest.raises(ValueError, match="DESIGN_SEED"):
        evaluation.EvalOptions(design_seed=-1)


def test_eval_gin_binds_the_design_macros():
    import gin

    gin.clear_config()
    try:
        files = ["gin_configs/runs/eval.gin", "gin_configs/tiny.gin"]
        required = ["MIXTURES = []", "OUTPUT_DIR = '/out'"]
        gin.parse_config_files_and_bindings(files, required, skip_unknown=False)
        assert gin.get_configurable(evaluation.EvalOptions)().design_budget is None
        binds = [*required, "DESIGN_BUDGET = 0.05", "DESIGN_SEED = 7"]
        gin.clear_config()
        gin.parse_config_files_and_bindings(files, binds, skip_unknown=False)
        options = gin.get_configurable(evaluation.EvalOptions)()
    finally:
        gin.clear_config()
    assert (options.design_budget, options.design_seed) == (0.05, 7)


def test_report_marks_estimates_with_the_design(sampled, tmp_path):
    """summary.json/md and templates.csv/md carry `prompteval.estimate` on the design's
    cells (refitted here from the design and the records), labelled estimated with the
    share, cells and seed, the observed cells' plain means beside them."""
    import csv
    import shutil

    from jaxrobust.analysis import prompteval, report
    from jaxrobust.evaluation import examples as examples_lib

    folder = tmp_path / "copy"
    shutil.copytree(sampled, folder)
    out = report.write_report(folder, n_resamples=20, seed=5)
    mask = design.sample_cells(6, 8, 0.25, 3)
    tids = sorted(t.rsplit(":", 1)[1] for t in TASKS)  # Name order = the design's rows.
    ids = sorted(e["example_id"] for e in examples_lib.task_examples(TASKS[0], _options()))
    order = [e["example_id"] for e in examples_lib.task_examples(TASKS[0], _options())]
    correct = np.zeros((6, 8), bool)
    words, plain, gold = [], [], {}
    for row, tid in enumerate(tids):
        f = records.read_records(records.records_path(folder, "tiny", f"jr:world_type:qa:{tid}"))
        for r in f.records:
            correct[row, ids.index(r["example_id"])] = r["correct"]
            gold[ids.index(r["example_id"])] = r["gold_index"]
        words.append("|".join(f.records[0]["options"]))
        plain.append(np.mean([r["correct"] for r in f.records]))
    # The design's mask in the report's column order (examples sorted by id).
    cols = np.array([order.index(i) for i in ids])
    m = mask[:, cols]
    x, names = prompteval.template_covariates([""] * 6, words)
    inter = [i for i, n in enumerate(names) if n.startswith("answer_words=")]
    g = prompteval.gold_position([gold[c] for c in range(8)])
    want = prompteval.estimate(m, correct, x, g, inter, seed=5)

    summary = json.loads((out / "summary.json").read_text())
    (s,) = [s for s in summary["summary"] if s["benchmark"] == "world_type/qa"]
    e = s["estimated"]
    assert e["method"] == "prompteval (estimated)" and (e["budget"], e["seed"]) == (0.25, 3)
    assert (e["share"], e["cells"], e["grid"]) == (0.25, 12, [6, 8])
    for k in ("mean", "p5", "p25", "p50", "p75", "p95", "spread"):
        assert e[k] == pytest.approx(want.summary[k], abs=1e-12)
        assert e["interval"][k] == pytest.approx(list(want.interval[k]), abs=1e-12)
        assert e["observed_cells"][k] == pytest.approx(prompteval.summarize(plain)[k])
    rows = list(csv.DictReader(open(out / "templates.csv")))
    assert [r["template_id"] for r in rows] == tids
    for i, r in enumerate(rows):
        assert float(r["score"]) == pytest.approx(plain[i])  # Observed cells' plain mean.
        assert float(r["estimated"]) == pytest.approx(want.per_template[i], abs=1e-12)
        assert float(r["estimated_low"]) == pytest.approx(want.per_template_interval[i, 0])
        assert (r["design_share"], r["design_cells"], r["design_seed"]) == ("0.25", "12", "3")
    label = "estimated from 25.0% of cells (12 cells), seed 3"
    md = (out / "summary.md").read_text()
    assert "## Estimated from a sampled design" in md and label in md
    assert f"{100 * want.summary['p95']:.1f}" in md.split("## Estimated")[1]
    tmd = (out / "templates.md").read_text()
    assert "estimated accuracy (%) [90% interval]" in tmd and tmd.count(label) == 6
    assert "estimated" not in (out / "summary.csv").read_text()
