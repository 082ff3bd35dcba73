"""The benchmarks' machinery (no timing is asserted anywhere here).

- `benchmarks/interleave.py`: the A B A B schedule, medians with min-max, ratios
  per adjacent pair, the matmul drift flag, and the README blocks it writes and
  reads back;
- README's "Inference speed" blocks parse and hold what the scripts write
  (`bench:eval` from bench_eval.py, `bench:engine` from bench_rank_classification.py);
- `benchmarks/hf_lm_eval_style.py`: its metrics against sklearn, its option
  scores against the engine on a tiny random T5 with a tokenizer trained here
  (the agreement `bench_eval.py` checks before any ratio), and the agreement
  rule (near-ties);
- `benchmarks/bench_gpu.py` runs at toy size on CPU.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_eval  # noqa: E402
import hf_lm_eval_style  # noqa: E402
import interleave  # noqa: E402

# ---------------------------------------------------------------------------
# interleave.py
# ---------------------------------------------------------------------------


def test_interleave_runs_arms_alternately_and_probes_around_every_repetition():
    calls = []

    def arm(name, secs):
        def fn():
            calls.append(name)
            return {"seconds": secs}

        return fn

    probes = iter([100.0, 90.0, 70.0])
    res = interleave.interleave(
        {"a": arm("a", 2.0), "b": arm("b", 1.0)}, 2, probe=lambda: next(probes), log=lambda s: 0
    )
    assert calls == ["a", "b", "a", "b"]
    assert res["probes"] == [100.0, 90.0, 70.0]  # Before each repetition and after the last.
    assert [r["seconds"] for r in res["runs"]["a"]] == [2.0, 2.0]
    assert len(res["load"]) == 3
    d = interleave.drift(res["probes"])
    assert d["flagged"] and d["change"] == pytest.approx(-0.3)
    assert not interleave.drift([100.0, 50.0, 119.0])["flagged"]  # First vs last only.
    assert interleave.drift([100.0, 121.0])["flagged"]


def test_ratios_are_per_adjacent_pair_not_of_medians():
    slow, fast = [10.0, 30.0, 12.0], [5.0, 10.0, 3.0]
    r = interleave.paired_ratios(slow, fast)
    assert r == {"median": 3.0, "min": 2.0, "max": 4.0}  # 2, 3, 4.
    assert r["median"] != np.median(slow) / np.median(fast)  # 12 / 5 = 2.4.
    assert interleave.spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0}
    with pytest.raises(ValueError, match="equal, non-empty"):
        interleave.paired_ratios([1.0], [1.0, 2.0])


def test_spread_text_round_trips():
    s = {"median": 1.234, "min": 0.5, "max": 12.0}
    text = interleave.fmt_spread(s, 2, "x")
    assert text == "1.23x [0.50-12.00]"
    assert interleave.parse_spread(text) == {"median": 1.23, "min": 0.5, "max": 12.0}
    assert interleave.parse_spread("7.5 [7.1-8.0]")["max"] == 8.0
    with pytest.raises(ValueError, match="median"):
        interleave.parse_spread("fast")


def test_readme_block_is_replaced_between_markers_only(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("intro\n<!-- bench:x begin -->\nold\n<!-- bench:x end -->\noutro\n")
    interleave.write_block(str(path), "x", "| a | b |\n|---|---|\n| 1 [0-2] | 3 |\n")
    doc = path.read_text()
    assert doc.startswith("intro\n<!-- bench:x begin -->\n| a | b |") and doc.endswith("outro\n")
    assert "old" not in doc
    rows = interleave.parse_table(interleave.read_block(doc, "x"))
    assert rows == [{"a": "1 [0-2]", "b": "3"}]
    with pytest.raises(ValueError, match="markers"):
        interleave.write_block(str(path), "y", "text")


def test_workers_speak_the_line_protocol(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        "import interleave\n"
        "print('noise on stdout goes to stderr')\n"
        "interleave.serve(lambda: {'ok': 1}, lambda r: {'seconds': r['n'] * 2.0})\n"
    )
    w = interleave.Worker("w", [sys.executable, str(script)])
    try:
        assert w.ready == {"ok": 1}
        assert w.run(n=3) == {"seconds": 6.0}
        assert w.run(n=1) == {"seconds": 2.0}
    finally:
        w.close()
    assert w.proc.returncode == 0


# ---------------------------------------------------------------------------
# README's blocks, as the scripts write them.
# ---------------------------------------------------------------------------

EVAL_HEADER = [
    "data set",
    "measure",
    "eval",
    "engine alone",
    "HF lm-eval style",
    "eval vs HF",
    "eval time / engine time",
]


def _fake_eval_results() -> dict:
    def runs(xs):
        return [{"seconds": x} for x in xs]

    steady, cold = {}, {}
    for s in ("boolq", "semeval"):
        cold[f"eval_{s}"], cold[f"hf_{s}"] = runs([20.0, 22.0]), runs([60.0, 70.0])
        steady[f"eval_{s}"], steady[f"engine_{s}"] = runs([4.0, 5.0]), runs([3.8, 4.4])
        steady[f"hf_{s}"] = runs([12.0, 16.0])
        for arm, tokens in ((f"eval_{s}", (100, 150)), (f"hf_{s}", (200, 210))):
            for r in steady[arm]:
                r["input_tokens"] = dict(zip(("real", "padded"), tokens, strict=True))
    args = {"examples": 4, "templates": 2, "reps": 2, "cold_reps": 2, "threads": 2}
    return {
        "args": {**args, "batch_size": 32},
        "sets": ["boolq", "semeval"],
        "agreement": {
            s: {
                "examples": 8,
                "max_abs_diff": 2e-5,
                "differ": 0,
                "near_ties": 0,
                "metric_eval": 0.5,
                "metric_hf": 0.5,
            }
            for s in ("boolq", "semeval")
        },
        "cold": {"runs": cold, "probes": [100.0, 95.0, 99.0], "load": ["1 2 3"] * 3},
        "steady": {"runs": steady, "probes": [100.0, 70.0, 60.0], "load": ["1 2 3"] * 3},
        "hf_threads": 2,
        "n_examples": {"boolq": 8, "semeval": 8},
        "longest": 100,
    }


def test_eval_report_format_parses_and_its_ratios_are_paired():
    text = bench_eval.report(None, _fake_eval_results())
    rows = interleave.parse_table(text)
    assert list(rows[0]) == EVAL_HEADER
    boolq_cold, boolq_steady = rows[0], rows[1]
    assert interleave.parse_spread(boolq_cold["eval vs HF"]) == {
        "median": 3.09,  # (60/20 + 70/22) / 2, per pair.
        "min": 3.0,
        "max": 3.18,
    }
    assert interleave.parse_spread(boolq_steady["eval"])["median"] == pytest.approx(1.8)
    assert interleave.parse_spread(boolq_steady["eval time / engine time"])["max"] == 1.14
    assert "DRIFT > 20%" in text  # Steady probes went 100 -> 60.
    assert "| boolq cold: eval >= 3x HF | 3.09x | yes |" in text
    assert "| boolq steady: eval >= 3x HF | 3.10x | yes |" in text  # 12/4, 16/5.
    assert "| boolq: pipeline overhead < 10% of engine time | 9% | yes |" in text
    assert "--examples 4 --templates 2" in text
    assert (
        "- boolq: eval 100 / 150 (33% padding, one encoder pass per example); HF 200 / 210 "
        "(5% padding, one per option); HF runs 1.40x the eval command's encoder tokens." in text
    )


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_eval_block_is_the_scripts_output():
    block = interleave.read_block(_readme(), "eval")
    rows = interleave.parse_table(block)
    assert list(rows[0]) == EVAL_HEADER
    assert {r["data set"] for r in rows} == {"boolq", "semeval"}
    for r in rows:
        for key in ("eval", "HF lm-eval style", "eval vs HF"):
            s = interleave.parse_spread(r[key])
            assert s["min"] <= s["median"] <= s["max"]
    # The command it names parses with the script's own arguments.
    cmd = block.split("Command: `")[1].split("`")[0].split()
    assert cmd[:2] == ["python", "benchmarks/bench_eval.py"] and "--write-readme" in cmd
    assert "Agreement boolq" in block and "Agreement semeval" in block
    assert "Load average" in block and "Matmul throughput (cold" in block
    assert "HF runs" in block and "the eval command's encoder tokens" in block


def test_readme_engine_block_is_the_scripts_output():
    import bench_rank_classification as brc

    block = interleave.read_block(_readme(), "engine")
    rows = interleave.parse_table(block)
    assert list(rows[0]) == brc.TABLE_HEADER
    for r in rows:
        s = interleave.parse_spread(r["examples/s"])
        assert 0 < s["min"] <= s["median"] <= s["max"]
    cmd = block.split("Command: `")[1].split("`")[0].split()
    assert cmd[:2] == ["python", "benchmarks/bench_rank_classification.py"]
    assert "Matmul throughput" in block and "Load average" in block


# ---------------------------------------------------------------------------
# The HF baseline and the agreement rule.
# ---------------------------------------------------------------------------


def test_hf_script_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.RandomState(0)
    labels = ["A(e1,e2)", "A(e2,e1)", "B(e1,e2)", "Other"]
    reqs = [
        {"options": labels, "gold": int(g), "negative": "Other"} for g in rng.randint(0, 4, 200)
    ]
    preds = [int(p) for p in rng.randint(0, 4, 200)]
    got = hf_lm_eval_style.metric(reqs, preds)
    gold = [r["gold"] for r in reqs]
    assert got["accuracy"] == pytest.approx(accuracy_score(gold, preds))
    want = f1_score(gold, preds, labels=[0, 1, 2], average="micro")
    assert got["micro_f1"] == pytest.approx(want)
    yes_no = [{"options": ["no", "yes"], "gold": g, "negative": ""} for g in (0, 1, 1)]
    assert hf_lm_eval_style.metric(yes_no, [0, 0, 1]) == {"accuracy": pytest.approx(2 / 3)}


def test_agreement_allows_only_near_tie_flips():
    ours = {"t|1": ([-1.0, -2.0], 0), "t|2": ([-3.0, -3.00001], 1)}
    hf = {
        "scores": {"t|1": [-1.0002, -2.0], "t|2": [-3.0, -3.00001]},
        "predictions": {"t|1": 0, "t|2": 0},
    }
    a = bench_eval.agreement(ours, hf)
    assert a["differ"] == 0 and a["near_ties"] == 1
    assert a["max_abs_diff"] == pytest.approx(2e-4)
    hf["predictions"]["t|1"] = 1
    assert bench_eval.agreement(ours, hf)["differ"] == 1


@pytest.mark.heavy  # ~35-45 s on a busy 2-core machine.
def test_hf_script_scores_agree_with_the_engine(tmp_path):
    """The lm-eval-style rows (one per option) give the engine's option scores (one
    encoder pass per example) on a tiny random T5 and a tokenizer trained here."""
    from jaxrobust import inference
    from jaxrobust.parallel import partitioning

    reqs = [
        {
            "task": "jr:toy:qa:t1",
            "example_id": f"e{i}",
            "input": f"Is the sky {w}? Answer yes or no. " * (1 + i % 3),
            "options": ["yes", "no", "maybe not"][: 2 + i % 2],
            "gold": i % 2,
            "negative": "",
        }
        for i, w in enumerate(["blue", "green", "red", "grey", "dark"])
    ]
    model_dir = tmp_path / "model"
    bench_eval.train_tokenizer([r["input"] for r in reqs] + ["yes no maybe"], model_dir, 200)
    bench_eval.save_random_t5(model_dir, preset="tiny")
    hf = hf_lm_eval_style.Scorer(str(model_dir), batch_size=3, max_input_len=24).run(reqs)
    spec = inference.ModelSpec(name="bench-tiny", family="t5", checkpoint=str(model_dir))
    import jax

    mesh = partitioning.make_mesh(devices=jax.devices()[:1])
    engine = inference.load_model(spec, mesh).engine(batch_size=4, max_input_len=24)
    results = engine.rank_classify([r["input"] for r in reqs], [r["options"] for r in reqs])
    ours = {
        f"{r['task']}|{r['example_id']}": ([float(x) for x in res.scores], int(res.prediction))
        for r, res in zip(reqs, results, strict=True)
    }
    a = bench_eval.agreement(ours, hf)
    assert a["max_abs_diff"] < bench_eval.SCORE_ATOL and a["differ"] == 0
    assert any(res.truncated for res in results)  # The long inputs were cut on both sides.


# ---------------------------------------------------------------------------
# The GPU script at toy size.
# ---------------------------------------------------------------------------


@pytest.mark.heavy  # ~35-45 s on a busy 2-core machine.
def test_gpu_script_runs_at_toy_size_on_cpu(tmp_path):
    import bench_gpu

    out = tmp_path / "gpu.json"
    results = bench_gpu.main(["--toy", "--json", str(out)])
    assert [r["model"] for r in results] == ["t5:tiny", "llama:tiny"]
    for r in results:
        assert r["rank_examples_per_s"] > 0 and r["gen_tokens_per_s"] > 0
        assert r["rank_compile_s"] > 0 and r["gen_compile_s"] > 0  # XLA compiled both.
        assert r["peak_mb"] > 0
        assert r["rank_mfu"] is None  # CPU: no peak in the table.
    saved = json.loads(out.read_text())
    assert saved["results"][0]["model"] == "t5:tiny"
    assert bench_gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench_gpu.peak_tflops("TPU v5 lite") == 197.0
    assert bench_gpu.peak_tflops("cpu") is None


def test_gpu_script_flops_count_parameters_times_tokens():
    """T5: 2 x (encoder + cross K/V) per encoder token, 2 x the rest per decoder token;
    hand-counted for the tiny preset."""
    import bench_gpu
    import jax

    from jaxrobust.models import t5, t5_config

    cfg = t5_config.get_preset("tiny")
    params = jax.eval_shape(lambda: t5.T5(cfg).init(jax.random.PRNGKey(0), *t5.dummy_inputs()))
    params = params["params"]
    d, j, f, v = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    mlp = (len(cfg.mlp_activations) + 1) * d * f
    enc_layer = 4 * d * j + mlp + 2 * d  # Attention, MLP, two norms.
    relpos = cfg.num_heads * cfg.relative_attention_num_buckets
    enc = cfg.num_encoder_layers * enc_layer + d + relpos  # Plus the final norm.
    assert bench_gpu.param_count(params["encoder"]) == enc
    cross = cfg.num_decoder_layers * 2 * d * j
    logits = d * v if not cfg.logits_via_embedding else v * d
    dec_rest = bench_gpu.param_count(params["decoder"]) - cross
    if "logits_dense" not in params["decoder"]:
        dec_rest += logits
    got = bench_gpu.flops_t5(params, enc_tokens=10, dec_tokens=3)
    assert got == 2.0 * ((enc + cross) * 10 + dec_rest * 3)
