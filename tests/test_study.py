"""The built-in study end to end, reduced (gin_configs/study_tiny.gin): CLI, report, resume, seeds.

A few training steps on one task's evaluation, so it runs in CI; the numbers
show the machinery, not a result (README's table comes from the full run).
"""

import json
import pathlib
import re

import pytest

from jaxrobust import main
from jaxrobust.storage import records

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


def test_study_end_to_end_resumes_and_repeats(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    printed = _study(a, capsys)
    report = a / "eval" / "report"
    assert f"report: {report / 'study.md'}" in printed
    for name in (*REPORT_FILES, "study.png"):
        assert (report / name).stat().st_size > 0, name
    assert (report / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The table: three models, CIs around every estimate, the tuned row without an effect.
    table = (report / "study.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"\| (tuned|\+ PT)", line)]
    assert [r.split(" | ")[0] for r in rows[:3]] == ["| tuned", "| + PT", "| + PT+KL"]
    result = json.loads((report / "study.json").read_text())
    for model, row in result["models"].items():
        for key in ("observed", "paraphrase", "heldout", "gap"):
            assert row[key]["low"] <= row[key]["estimate"] <= row[key]["high"], (model, key)
        assert ("effect_heldout" in row) == (model != "tuned")

    # Held-out templates were never trained on; tuning saw the observed ones only.
    splits = {
        s: json.loads((a / s / "template_split.json").read_text()) for s in ("tune", "pt", "pt_kl")
    }
    for stage, split in splits.items():
        assert sorted(split["held_out"])[:4] == [f"all_h{i}" for i in range(1, 5)], stage
        assert sorted(split["original"]) == [f"all_o{i}" for i in range(1, 5)], stage
        assert not set(split["held_out"]) & set(split["original"] + split["paraphrase"])
    assert splits["tune"]["paraphrase"] == [] and len(splits["pt_kl"]["paraphrase"]) == 4

    # The records agree with the table: the tuned model's observed accuracy.
    rec_dir = a / "eval" / "records" / "tuned"
    observed = [
        records.read_records(p) for p in sorted(rec_dir.glob("jr__world_yn__qa__yn_o*.jsonl"))
    ]
    acc = sum(sum(r["correct"] for r in f.records) / len(f.records) for f in observed) / 4
    assert result["models"]["tuned"]["observed"]["estimate"] == pytest.approx(acc)

    # Resume: the same command again skips every stage and rewrites no record file.
    stamps = {p: p.stat().st_mtime_ns for p in (a / "eval" / "records").rglob("*.jsonl")}
    again = _study(a, capsys)
    assert again.count("complete, skipped") == 4  # tokenizer, tune, pt, pt_kl
    assert "{'written': 0, 'resumed': 0, 'skipped': 12}" in again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # Same seed, another directory: identical report tables.
    _study(b, capsys)
    for name in ("study.md", "study.json", "summary.md", "templates.md"):
        assert (b / "eval" / "report" / name).read_text() == (report / name).read_text(), name
