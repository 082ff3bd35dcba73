"""The built-in study end to end, reduced (gin_configs/study_tiny.gin): CLI, report, resume, seeds.

A few pretraining and training steps on one task's evaluation, so it runs in
CI; the numbers show the machinery, not a result (README's table comes from
the full run). One seed, as README's reduced study says.
"""

import json
import pathlib
import re

import pytest

from jaxrobust import main
from jaxrobust.storage import records
from jaxrobust.study import pipeline, seeds

REPO = pathlib.Path(__file__).resolve().parents[1]
REPORT_FILES = ("study.md", "study.json", "summary.md", "templates.md")


def _study(out: pathlib.Path, capsys, *extra: str) -> str:
    argv = [
        "study",
        "--gin_file=gin_configs/runs/study.gin",
        "--gin_file=gin_configs/study_tiny.gin",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.pipeline.StudyOptions.eval_tasks=('yn',)",
        *extra,
    ]
    assert main.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.heavy
def test_study_end_to_end_resumes_and_repeats(tmp_path, capsys):
    # One seed's study in what the several-seeds setting calls <OUTPUT_DIR>/seed_0.
    b = tmp_path / "seeds"
    a = b / "seed_0"
    printed = _study(a, capsys)
    report = a / "eval" / "report"
    assert f"report: {report / 'study.md'}" in printed
    for name in (*REPORT_FILES, "study.png"):
        assert (report / name).stat().st_size > 0, name
    assert (report / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The table: five models, CIs around every estimate, the tuned row without an effect.
    table = (report / "study.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"\| (tuned|\+ [PF]T)", line)]
    assert [r.split(" | ")[0] for r in rows[:5]] == [
        "| tuned", "| + PT", "| + PT+KL", "| + FT", "| + FT+KL"
    ]  # fmt: skip
    result = json.loads((report / "study.json").read_text())
    assert len(result["models"]) == 5
    for model, row in result["models"].items():
        for key in ("observed", "paraphrase", "heldout", "gap", "effect_heldout", "effect_gap"):
            if key in row:
                assert row[key]["low"] <= row[key]["estimate"] <= row[key]["high"], (model, key)
        assert ("effect_heldout" in row) == ("effect_gap" in row) == (model != "tuned")
    # Dev templates: scored on validation passages in their own folder, in no role table.
    assert not any(t.endswith(("_d1", "_d2")) for t in result["templates"])
    dev_files = sorted(p.name for p in (a / "eval_dev" / "records" / "tuned").glob("*.jsonl"))
    assert dev_files == ["jr__world_yn__qa__yn_d1.jsonl", "jr__world_yn__qa__yn_d2.jsonl"]
    dev = records.read_records(a / "eval_dev" / "records" / "tuned" / dev_files[0])
    assert {r["example_id"].split("-")[1] for r in dev.records} == {"validation"}
    assert set(result["dev"]) == set(result["models"])

    # Pretraining: the pretrained checkpoint is kept, and tuning started from it.
    assert (a / "pretrain" / "hf_model" / "model.safetensors").stat().st_size > 0
    tune_settings = json.loads((a / "tune" / "train_settings.json").read_text())
    assert tune_settings["model"]["checkpoint"] == str(a / "pretrain" / "hf_model")
    timings = json.loads((a / "timings.json").read_text())
    # peak_rss_mb is the process's peak (ru_maxrss): here the test worker's, which holds
    # whatever earlier tests in the worker used, so only its presence is checked; the
    # study's own peak is measured on the command (README, "Time and memory").
    assert set(pipeline.STAGES) <= set(timings) and timings["peak_rss_mb"] > 0

    # Held-out and dev templates were never trained on; tuning saw the observed ones only.
    stages = ("tune", "pt", "pt_kl", "ft", "ft_kl")
    splits = {s: json.loads((a / s / "template_split.json").read_text()) for s in stages}
    never = {"all_d1", "all_d2"} | {f"all_h{i}" for i in range(1, 5)}
    for stage, split in splits.items():
        assert never <= set(split["held_out"]), stage
        assert sorted(split["original"]) == [f"all_o{i}" for i in range(1, 5)], stage
        assert not set(split["held_out"]) & set(split["original"] + split["paraphrase"])
        paraphrases = [f"all_p{i}" for i in range(1, 5)] if stage.endswith("_kl") else []
        assert sorted(split["paraphrase"]) == paraphrases, stage

    # The records agree with the table: the tuned model's observed accuracy.
    rec_dir = a / "eval" / "records" / "tuned"
    observed = [
        records.read_records(p) for p in sorted(rec_dir.glob("jr__world_yn__qa__yn_o*.jsonl"))
    ]
    acc = sum(sum(r["correct"] for r in f.records) / len(f.records) for f in observed) / 4
    assert result["models"]["tuned"]["observed"]["estimate"] == pytest.approx(acc)

    # Resume, through the several-seeds setting (SEEDS=[0] over b, whose seed_0 is a):
    # every stage is skipped, no record file is rewritten, and the across-seeds table
    # (README's, by study.seeds) is written. (From scratch, the same seed gives the same
    # bytes: tests/test_study_repro.py.)
    stamps = {p: p.stat().st_mtime_ns for p in (a / "eval" / "records").rglob("*.jsonl")}
    again = _study(b, capsys, "--gin.SEEDS=[0]")
    # tokenizer, pretrain, tune, pt, pt_kl, ft, ft_kl
    assert again.count("complete, skipped") == 7
    assert again.count("{'written': 0, 'resumed': 0, 'skipped': 12}") == 5
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert f"report: {b / 'report' / 'study.md'}" in again
    assert json.loads((b / "report" / "study_seeds.json").read_text())["seeds"] == [0]
    assert (b / "report" / "study.md").read_text().count("| + FT+KL |") == 2
    both = seeds.gather([a, a], pipeline.MODEL_LABELS)
    lines = seeds.table(both).splitlines()
    tuned = result["models"]["tuned"]["observed"]
    assert lines[2].startswith(f"| tuned | {100 * tuned['estimate']:.1f} ± 0.0 [")
