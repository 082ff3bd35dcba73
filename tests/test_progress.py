"""Progress where a user waits (eval, training, checkpoint loading): tqdm bars with rate and
ETA on a terminal, nothing off one, and never in a result file."""

import io
import os
import pathlib
import sys

import jax
import pytest
from flax import linen as nn

from jaxrobust import checkpoints, inference, main
from jaxrobust.evaluation import resume
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.training import trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


class Terminal(io.StringIO):
    """A stream that says it is a terminal (tqdm's `disable=None` shows bars on it)."""

    def isatty(self) -> bool:
        return True


def test_eval_progress_has_rate_and_eta_on_a_terminal_and_nothing_elsewhere():
    shown = Terminal()
    bar = resume.Progress(40, file=shown)
    bar.update(40, "jr:toyqa:qa:toyqa_o1")
    bar.close()
    line = shown.getvalue()
    assert "40/40" in line and "ex/s" in line and "<00:00" in line and "toyqa_o1" in line
    hidden = io.StringIO()
    bar = resume.Progress(40, file=hidden)
    bar.update(40, "x")
    bar.close()
    assert hidden.getvalue() == ""
    off = Terminal()
    bar = resume.Progress(40, enabled=False, file=off)
    bar.update(40, "x")
    bar.close()
    assert off.getvalue() == ""


def test_training_console_line_carries_rate_and_eta():
    assert trainer._rate_eta(10, 30, 5.0) == "2.0 steps/s, ETA 0:00:15"
    assert trainer._rate_eta(0, 30, 5.0) == "0.0 steps/s, ETA ?"


def test_checkpoint_loading_shows_bytes_and_eta(tmp_path, monkeypatch):
    family = inference.get_family("t5")
    config = family.get_preset("tiny", vocab_size=ByteTokenizer().vocab_size)
    params = nn.meta.unbox(jax.jit(family.init(config))(jax.random.PRNGKey(0)))["params"]
    family.export_hf(params, config, tmp_path / "ckpt")
    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    checkpoints.load_hf_t5(tmp_path / "ckpt", config=config)
    line = shown.getvalue()
    assert "loading" in line and "100%" in line and "B/s" in line


def _tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "/runs/" not in f"/{p.relative_to(folder).as_posix()}"
    }


@pytest.mark.heavy
def test_bars_on_a_terminal_change_no_result_file(tmp_path, monkeypatch, capsys):
    """eval and train_prompt with stderr a terminal: bars with ETA are shown, and the
    records (and the training's metrics and prompt) equal those of a run without."""
    monkeypatch.syspath_prepend(str(FIXTURES))

    def eval_run(out):
        return main.main(
            [
                "eval",
                "--gin_file=gin_configs/runs/eval.gin",
                "--gin_file=gin_configs/tiny.gin",
                "--gin.MIXTURES=['jr:toyqa:qa:toyqa_o1']",
                f"--gin.OUTPUT_DIR='{out}'",
                "--gin.TASK_MODULES=['eval_tasks']",
            ]
        )

    def train_run(work):
        return main.main(
            [
                "train_prompt",
                "--gin_file=gin_configs/runs/train_prompt.gin",
                "--gin_file=gin_configs/tiny.gin",
                "--gin.TASK='jr:toysent:qa'",
                f"--gin.WORKDIR='{work}'",
                "--gin.TASK_MODULES=['train_tasks']",
                "--gin.NUM_HELD_OUT=1",
            ]
        )

    assert eval_run(tmp_path / "plain") == 0
    assert train_run(tmp_path / "plain_work") == 0
    plain_out = capsys.readouterr().out
    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    assert eval_run(tmp_path / "bars") == 0
    assert train_run(tmp_path / "bars_work") == 0
    bars = shown.getvalue()
    assert "eval: 100%" in bars and "8/8" in bars and "ex/s" in bars
    assert "train: 100%" in bars and "4/4" in bars and "step/s" in bars
    assert "ETA" in plain_out  # The console lines (stdout) carry rate and ETA too.
    assert _tree(tmp_path / "plain") == _tree(tmp_path / "bars")
    for name in ("metrics.json", "prompt.npy", "template_split.json"):
        assert (tmp_path / "plain_work" / name).read_bytes() == (
            tmp_path / "bars_work" / name
        ).read_bytes()
    assert os.path.exists(tmp_path / "bars" / "records")
