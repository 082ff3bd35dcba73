"""The papers' reproduction configs and the LLaMA-family model gins, end to end.

* `--gin.PROMPT_FORMAT` reaches the record headers (the LLaMA instruction-model
  gins bind ModelSpec.prompt_format to that macro).
* gin_configs/runs/sun2023_mmlu_bbl.gin and ni2023_re.gin: their protocol
  (mode, task modules, every benchmark's observed and unobserved groups and the
  template count of each), and a tiny-model run of each (tiny.gin last, a few
  templates and examples per benchmark) whose report has observed and
  unobserved means and a gap for every benchmark. The runs go through
  subprocesses: the configs' task modules add templates to the task registry,
  which would leak into other tests of the same worker.
"""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import gin
import numpy as np
import pytest
from jaxrobust.tasks import qa
from test_report import qa_rows, write_records

from jaxrobust import evaluation, main
from jaxrobust.analysis import report, scoring, stats
from jaxrobust.storage import records

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))
import eval_tasks  # noqa: E402, F401  (registers jr:toyqa:qa)

TASK = "jr:toyqa:qa:toyqa_o1"


def _header(out: pathlib.Path, model: str) -> dict:
    return records.read_records(records.records_path(out, model, TASK)).header


LLAMA_GINS = {  # model gin -> (model name, its prompt format)
    "alpaca_7b.gin": ("alpaca-7b", "alpaca"),
    "vicuna_7b.gin": ("vicuna-7b", "vicuna_v1.1"),
    "vicuna_13b.gin": ("vicuna-13b", "vicuna_v1.1"),
    "wizardlm_7b.gin": ("wizardlm-7b", "wizardlm_7b_v1.0"),
    "wizardlm_13b.gin": ("wizardlm-13b", "wizardlm_13b_v1.2"),
    "chinese_alpaca_2_7b.gin": ("chinese-alpaca-2-7b", "chinese_alpaca_2"),
}


def _spec(files: list[str], bindings: list[str]):
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(
            [str(REPO / f) for f in files],
            ["MIXTURES = []", "OUTPUT_DIR = '/out'", "CHECKPOINT_DIR = '/ckpt'", *bindings],
            skip_unknown=False,
        )
        return gin.get_configurable(evaluation.ModelSpec)()
    finally:
        gin.clear_config()


@pytest.mark.parametrize("gin_file", sorted(LLAMA_GINS))
def test_llama_gins_take_their_prompt_format_from_the_macro(gin_file):
    name, fmt = LLAMA_GINS[gin_file]
    files = ["gin_configs/runs/eval.gin", f"gin_configs/models/{gin_file}"]
    spec = _spec(files, [])
    assert (spec.name, spec.family, spec.prompt_format) == (name, "llama", fmt)
    assert _spec(files, ["PROMPT_FORMAT = 'none'"]).prompt_format == "none"


def test_prompt_format_override_reaches_the_record_header(tmp_path):
    """Alpaca-7B's gin with random tiny weights and --gin.PROMPT_FORMAT: the record
    header names the override (before: the macro was ignored, header 'none')."""
    args = [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/models/alpaca_7b.gin",
        f"--gin.MIXTURES={[TASK]!r}",
        "--gin.TASK_MODULES=['eval_tasks']",
        "--gin.CHECKPOINT_DIR=''",
        "--gin.evaluation.ModelSpec.preset='tiny'",
        "--gin.evaluation.ModelSpec.tokenizer='byte'",
        "--gin.LIMIT=2",
        "--gin.BATCH_SIZE=8",
        f"--gin.OUTPUT_DIR='{tmp_path}'",
        "--gin.PROMPT_FORMAT='vicuna_v1.1'",
    ]
    assert main.main(args) == 0
    assert _header(tmp_path, "alpaca-7b")["config"]["prompt_format"] == "vicuna_v1.1"


def test_per_data_set_rows_by_hand(tmp_path):
    """A benchmark of two data sets (mmlu_a: 4 examples, mmlu_b: 2) also reported per
    data set: each one's observed and unobserved means over templates and the gap
    with the two-level bootstrap CI on its examples alone."""
    spec = {"name": "m", "observed_collections": ["flan"]}
    gold = {"mmlu_a": ["A", "B", "C", "D"], "mmlu_b": ["A", "B"]}
    grid = {  # template -> (provenance, predictions on mmlu_a, predictions on mmlu_b)
        "o1": ("observed:flan", ["A", "B", "C", "A"], ["A", "A"]),  # 3/4, 1/2
        "o2": ("observed:flan", ["A", "B", "C", "D"], ["B", "A"]),  # 1, 0
        "u1": ("unobserved", ["A", "A", "A", "A"], ["A", "B"]),  # 1/4, 1
        "u2": ("unobserved", ["B", "A", "D", "C"], ["A", "A"]),  # 0, 1/2
    }
    for tid, (prov, pa, pb) in grid.items():
        for ds, pred in (("mmlu_a", pa), ("mmlu_b", pb)):
            rows = qa_rows(pred, gold[ds])
            write_records(tmp_path, "m", f"jr:{ds}:qa:{tid}", prov, rows, spec=spec)
    report_dir = report.write_report(tmp_path, n_resamples=50, seed=0)
    saved = json.loads((report_dir / "summary.json").read_text())
    per = {s["dataset"]: s for s in saved["per_dataset"]}
    assert sorted(per) == ["mmlu_a", "mmlu_b"]
    want = {"mmlu_a": (7 / 8, 1 / 8), "mmlu_b": (1 / 4, 3 / 4)}
    for ds, (obs, unobs) in want.items():
        s = per[ds]
        assert (s["parent"], s["benchmark"], s["model"]) == ("mmlu/qa", f"mmlu/qa {ds}", "m")
        assert (s["observed_n"], s["unobserved_n"]) == (2, 2)
        assert s["observed_mean"] == pytest.approx(obs)
        assert s["unobserved_mean"] == pytest.approx(unobs)
        assert s["gap"] == pytest.approx(obs - unobs)
        column = 1 if ds == "mmlu_a" else 2
        correct = np.array([np.array(grid[t][column]) == gold[ds] for t in grid], float)
        ci = stats.bootstrap(correct, observed=np.array([1, 1, 0, 0], bool), n_resamples=50, seed=0)
        assert (s["gap_ci_low"], s["gap_ci_high"]) == (ci["gap"].low, ci["gap"].high)
    md = (report_dir / "summary.md").read_text()
    assert "| m | mmlu/qa | mmlu_b | 25.0 ± 35.4 | 75.0 ± 35.4 | -50.0 [" in md
    # A benchmark of one data set adds nothing (summary.json as before).
    one = tmp_path / "one"
    for tid, (prov, pa, _) in grid.items():
        write_records(one, "m", f"jr:boolq:qa:{tid}", prov, qa_rows(pa, gold["mmlu_a"]), spec=spec)
    saved = json.loads((report.write_report(one, n_resamples=10) / "summary.json").read_text())
    assert "per_dataset" not in saved


# ---------------------------------------------------------------------------
# The README's reproduction blocks on the tiny model.
# ---------------------------------------------------------------------------

BBL = [f"bbl_{t}" for t in qa.BIGBENCH_TASKS]
SUN_COUNTS = {  # group -> templates (of 57 MMLU subjects / of each BIG-bench Lite task)
    "observed_flan": (43, 43),
    "observed_p3": (25, 14),
    "unobserved": (12, 12),
}
NI_COUNTS = {  # mixture -> templates
    "jr:semeval:re#observed_p3": 5,
    "jr:semeval:re#unobserved": 12,
    **{
        f"jr:{d}:mcqa#{g}": n
        for d in ("semeval", "tacred", "tacrev", "retacred")
        for g, n in (("observed_flan", 43), ("observed_p3", 14), ("unobserved", 12))
    },
}


MAIN = ["python", "-m", "jaxrobust.main"]


def _readme_block(config: str, tmp_path: pathlib.Path) -> list[list[str]]:
    """The commands of README's "Reproducing the papers" block naming `config`, as
    argument lists (continuations joined), `/data/` moved under `tmp_path`."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Reproducing the papers\n", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"^```bash\n(.*?)^```", section, re.M | re.S) if config in b]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line.replace("/data/", f"{tmp_path}/data/")) for line in lines if line]


def _reproduce(config: str, tmp_path: pathlib.Path) -> tuple[dict, dict]:
    """Runs README's block for `config` (tests/fixtures/reproduce.py); returns the
    driver's result and the report's summary.json."""
    commands = _readme_block(config, tmp_path)
    assert [c[:4] for c in commands] == [MAIN + ["eval"], MAIN + ["report"]]
    job = {"eval": commands[0][3:], "report": commands[1][3:], "per_group": 1, "datasets": 2}
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        **{f"JAXROBUST_{v}_DIR": str(FIXTURES / v.lower()) for v in ("TACRED", "RETACRED")},
        "JAXROBUST_TACREV_DIR": str(FIXTURES / "tacred"),  # TACREV: TACRED's labels.
    }
    proc = subprocess.run(
        [sys.executable, str(FIXTURES / "reproduce.py")],
        input=json.dumps(job),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = pathlib.Path(commands[1][-1].split("=", 1)[1])
    return json.loads(line[7:]), json.loads((out / "report" / "summary.json").read_text())


def _assert_observed_and_unobserved(summary: list[dict], benchmarks: list[str]) -> None:
    by_bench = {s["benchmark"]: s for s in summary}
    assert sorted(by_bench) == sorted(benchmarks)
    for b in benchmarks:
        s = by_bench[b]
        assert s["observed_n"] >= 1 and s["unobserved_n"] >= 1, b
        for key in ("observed_mean", "unobserved_mean", "gap", "gap_ci_low", "gap_ci_high"):
            assert s[key] is not None, (b, key)
        assert s["gap"] == pytest.approx(s["observed_mean"] - s["unobserved_mean"])


@pytest.mark.heavy
def test_sun2023_block_on_the_tiny_model(tmp_path, shared_data_dir):
    result, saved = _reproduce("sun2023_mmlu_bbl.gin", tmp_path)
    assert result["mode"] == "sun"
    assert result["task_modules"] == ["jaxrobust.tasks", "jaxrobust.tasks.sun2023"]
    counts = result["counts"]
    assert len(counts) == 3 * (1 + len(BBL))
    for group, (mmlu, bbl) in SUN_COUNTS.items():
        assert counts[f"jr:mmlu:qa#{group}"]["templates"] == mmlu
        assert counts[f"jr:mmlu:qa#{group}"]["datasets"] == 57
        for task in BBL:
            assert (
                counts[f"jr:{task}:qa#{group}"]["templates"],
                counts[f"jr:{task}:qa#{group}"]["datasets"],
            ) == (bbl, 1)
    # How each paper model's row counts them (its model gin's observed_collections).
    for gin_file, want in {
        "flan_t5_xl.gin": {"mmlu": (43, 12, 25), "bbl": (43, 12, 14)},
        "t0pp.gin": {"mmlu": (25, 12, 43), "bbl": (14, 12, 43)},
        "alpaca_7b.gin": {"mmlu": (0, 12, 68), "bbl": (0, 12, 57)},
    }.items():
        spec = _spec(["gin_configs/runs/eval.gin", f"gin_configs/models/{gin_file}"], [])
        for bench, base in (("mmlu", "jr:mmlu:qa"), ("bbl", "jr:bbl_winowhy:qa")):
            provenances = [p for g in SUN_COUNTS for p in counts[f"{base}#{g}"]["provenances"]]
            groups = [scoring.group_for_model(p, spec.observed_collections) for p in provenances]
            got = tuple(groups.count(g) for g in ("observed", "unobserved", "other"))
            assert got == want[bench], (gin_file, bench)
    # One template per group on two MMLU subjects and on every BIG-bench Lite task.
    assert len(result["tasks"]) == 3 * (2 + len(BBL))
    _assert_observed_and_unobserved(
        saved["summary"],
        ["mmlu/qa", "mmlu/qa pooled", "bigbench_lite/qa", "bigbench_lite/qa pooled"],
    )
    per = {s["dataset"]: s for s in saved["per_dataset"]}
    assert sorted(per) == sorted(BBL + ["mmlu_abstract_algebra", "mmlu_anatomy"])
    for ds, s in per.items():
        assert (s["observed_n"], s["unobserved_n"]) == (2, 1), ds  # Flan + P3; ours.
        assert None not in (s["observed_mean"], s["unobserved_mean"], s["gap_ci_low"]), ds


@pytest.mark.heavy
def test_ni2023_block_on_the_tiny_model(tmp_path, shared_data_dir):
    result, saved = _reproduce("ni2023_re.gin", tmp_path)
    assert result["mode"] == "ni"
    assert result["task_modules"] == ["jaxrobust.tasks", "jaxrobust.tasks.ni2023"]
    assert {k: v["templates"] for k, v in result["counts"].items()} == NI_COUNTS
    assert all(v["datasets"] == 1 for v in result["counts"].values())
    assert len(result["tasks"]) == len(NI_COUNTS)
    _assert_observed_and_unobserved(
        saved["summary"],
        ["semeval/re", "semeval/mcqa", "tacred/mcqa", "tacrev/mcqa", "retacred/mcqa"],
    )
