"""Sun et al.'s representation (the T5 decoder's state at the first generation step)
against HF transformers, recorded by `eval` beside the pooled-encoder one, and the
report's representation analysis keeping a training run's held-out templates
apart from its alignment paraphrases (hand-made records)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from parity_helpers import PARITY_TOL, T5_FAMILIES, make_hf_t5, padded_batch
from test_report import assert_png, qa_rows, write_records

from jaxrobust import checkpoints
from jaxrobust.analysis import report
from jaxrobust.inference import t5 as t5_inference

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("family", sorted(T5_FAMILIES))
def test_first_step_decoder_state_matches_hf(tmp_path, family):
    """HF's decoder_hidden_states[-1] (after the final layer norm) at position 0, the
    decoder reading only its start token, for right-padded inputs."""
    import torch

    hf = make_hf_t5(tmp_path, **T5_FAMILIES[family])
    config, params = checkpoints.load_hf_t5(tmp_path)
    enc, _, _, _ = padded_batch(config.vocab_size)
    ours = np.asarray(t5_inference.first_step_decoder_states(config, params, {"inputs": enc}))
    with torch.no_grad():
        out = hf(
            input_ids=torch.tensor(enc, dtype=torch.long),
            attention_mask=torch.tensor(enc != 0),
            decoder_input_ids=torch.zeros((enc.shape[0], 1), dtype=torch.long),
            output_hidden_states=True,
        )
    theirs = out.decoder_hidden_states[-1][:, 0].numpy()
    assert ours.shape == (enc.shape[0], config.emb_dim)
    np.testing.assert_allclose(ours, theirs, **PARITY_TOL)
    # Not the encoder's mean: a different representation.
    pooled = np.asarray(t5_inference.pooled_encoder_states(config, params, {"inputs": enc}))
    assert np.abs(pooled - ours).max() > 0.1


@pytest.mark.heavy  # A subprocess importing every task (~30-80 s).
def test_eval_records_the_decoder_state_and_the_report_names_it(tmp_path):
    """RECORD_POOLED='decoder_first' on the tiny T5: the record headers say so, the
    report's plot and summary name the state."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "fixtures")}
    cmd = [
        sys.executable,
        "-m",
        "jaxrobust.main",
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['jaxrobust.tasks', 'eval_tasks']",
        "--gin.RECORD_POOLED='decoder_first'",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    headers = [
        json.loads(p.read_text().splitlines()[0])
        for p in sorted((out / "records").rglob("*.jsonl"))
    ]
    assert headers and {h["config"]["record_pooled"] for h in headers} == {"decoder_first"}
    saved = json.loads((report.write_report(out, n_resamples=20) / "summary.json").read_text())
    (s,) = saved["summary"]
    assert s["representation"]["state"] == "decoder_first_step"
    plot = out / "report" / "plots" / "repr_decoder_first_step__tiny-t5__toyqa_qa.png"
    assert plot.is_file()


def test_report_keeps_held_out_apart_from_paraphrases(tmp_path):
    """A model evaluated with a training run's prompt: that run's template_split.json
    (beside prompt.npy) splits its unobserved templates into paraphrases (trained on
    by the alignment) and held-out ones; means by hand, correlations over the
    held-out templates alone."""
    work = tmp_path / "runs" / "pt_kl"
    work.mkdir(parents=True)
    (work / "prompt.npy").write_bytes(b"")
    split = {
        "task": "jr:toyqa:qa",
        "original": ["o1", "o2"],
        "paraphrase": ["p1", "p2"],
        "held_out": ["h1", "h2", "h3"],
        "task_names": {},
    }
    (work / "template_split.json").write_text(json.dumps(split))
    spec = {
        "name": "m+pt",
        "observed_collections": ["flan"],
        "soft_prompt": str(work / "prompt.npy"),
    }
    gold = ["yes", "no", "yes", "no"]
    grid = {  # template -> (provenance, predictions, pooled state sum over 4 examples)
        "o1": ("observed:flan", ["yes", "no", "yes", "no"], [4.0, 0.0, 0.0]),  # 1
        "o2": ("observed:flan", ["yes", "no", "yes", "yes"], [4.0, 0.4, 0.0]),  # 3/4
        "p1": ("unobserved", ["yes", "no", "no", "no"], [4.0, 0.0, 0.8]),  # 3/4
        "p2": ("unobserved", ["yes", "yes", "yes", "yes"], [4.0, 4.0, 0.0]),  # 1/2
        "h1": ("unobserved", ["no", "yes", "yes", "no"], [0.4, 4.0, 0.0]),  # 1/2
        "h2": ("unobserved", ["no", "yes", "no", "yes"], [0.0, 0.4, 4.0]),  # 0
        "h3": ("unobserved", ["yes", "no", "no", "yes"], [4.0, 2.0, 2.0]),  # 1/2
    }
    for tid, (prov, pred, pooled) in grid.items():
        rows = qa_rows(pred, gold)
        write_records(tmp_path, "m+pt", f"jr:toyqa:qa:{tid}", prov, rows, np.array(pooled), spec)
    report_dir = report.write_report(tmp_path, n_resamples=20)
    (s,) = json.loads((report_dir / "summary.json").read_text())["summary"]
    assert s["alignment"] == {
        "template_split": str(work / "template_split.json"),
        "original_n": 2,
        "original_mean": 7 / 8,
        "paraphrase_n": 2,
        "paraphrase_mean": 5 / 8,
        "held_out_n": 3,
        "held_out_mean": 1 / 3,
    }
    # Cosine distance of each held-out template's mean state from the observed
    # centroid, against its drop from the observed mean: the held-out correlation.
    mean = {t: np.array(v[2]) / 4 for t, v in grid.items()}
    centroid = (mean["o1"] + mean["o2"]) / 2
    held = ["h1", "h2", "h3"]
    dist = [
        1 - mean[t] @ centroid / (np.linalg.norm(mean[t]) * np.linalg.norm(centroid)) for t in held
    ]
    drop = [7 / 8 - x for x in (1 / 2, 0.0, 1 / 2)]
    from scipy import stats as sps

    r, p = sps.pearsonr(dist, drop)
    assert s["representation"]["held_out_pearson_cosine"] == pytest.approx([r, p])
    assert s["representation"]["state"] == "encoder_mean"
    md = (report_dir / "summary.md").read_text()
    assert "## Held-out templates and alignment paraphrases" in md
    assert "| m+pt | toyqa/qa | 87.5 (2) | 62.5 (2) | 33.3 (3) |" in md
    assert_png(report_dir / "plots" / "repr__m+pt__toyqa_qa.png", 450, 350)
    # The CSV keeps its columns; a split given explicitly applies to every model.
    assert "alignment" not in (report_dir / "summary.csv").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "jr:toyqa:qa", "original": []}))
    with pytest.raises(ValueError, match=r"bad.json: not a template split; missing"):
        report.write_report(tmp_path, n_resamples=20, template_split=bad)
