"""The built-in study: the whole mission end to end on generated data, on a CPU.

    python -m jaxrobust.main study     (gin_configs/runs/study.gin)

No pretrained weights and no download: the study trains its own small T5 from
scratch, so every stage runs the code paths researchers use at scale.

1. ``tokenizer/``  a small BPE vocabulary trained on the world (`study.vocab`).
2. ``tune/``       instruction tuning: `training.train` in full fine-tuning
   mode on the *observed* templates of the four world tasks
   (`jr:world_all:qa`, templates ``all_o*``), from random weights.
3. ``eval/``       `evaluation.run` of the tuned model on every template of
   every world task (`jr:world_<task>:<format>#all`): observed, paraphrase and
   held-out.
4. ``pt/``         soft-prompt tuning of the frozen tuned model, task loss on
   the observed templates only (PT).
5. ``pt_kl/``      the same plus lambda * KL(p_observed || p_paraphrase) on the
   paraphrase templates (PT+KL, Sun et al. 2023); CE on the observed rows
   only, so the paraphrases contribute no labels, only agreement.
6. ``eval/``       the two prompted models, on the same templates.
7. ``report/``     `report.write_report` (the papers' tables, per-template
   plots) and `study.summary` (accuracy by role with bootstrap CIs, the
   observed vs held-out gap, and the effect of PT and PT+KL; ``study.md``,
   ``study.png``).

Held-out templates (``*_h*``) are never trained on: stages 2, 4 and 5 name
them as held out, and the trainer checks and records it
(``<stage>/template_split.json``).

Resuming: a stage whose final output exists is skipped (a training stage's
``metrics.json``, the tokenizer's ``tokenizer.json``); an interrupted training
stage resumes from its last Orbax checkpoint and an interrupted evaluation
from its last committed chunk, so re-running the command finishes the study.
Runs are deterministic on one machine: the same options give the same report.

Optionally (`StudyOptions.data_dir` and `real_mixtures`) the tuned model is
also evaluated on real tasks from the shared data: the same runner and report
(``eval_real/``). Its vocabulary was trained on the world only, so expect
chance-level numbers; the point is the code path.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

from jaxrobust.storage import files

STAGES = ("tokenizer", "tune", "eval_tuned", "pt", "pt_kl", "eval_prompts", "report")
TASK = "jr:world_all:qa"  # The training view of the four world tasks (tasks/builtin.py).
MODEL_LABELS = {"tuned": "tuned", "tuned+pt": "+ PT", "tuned+pt_kl": "+ PT+KL"}


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """Every setting of the study; `gin_configs/runs/study.gin` binds them."""

    output_dir: str = "study_output"  # Everything goes here; re-running resumes.
    seed: int = 0  # Model init, data order, prompt init and the bootstrap.
    preset: str = "study-small"  # T5 preset (models/t5_config.py) trained from scratch.
    vocab_size: int = 1024  # BPE vocabulary trained on the world.
    max_input_len: int = 128  # Input tokens (world inputs have at most ~90).
    # Instruction tuning (full fine-tuning on the observed templates).
    tune_steps: int = 3000
    tune_batch_size: int = 32
    tune_learning_rate: float = 2e-3
    tune_warmup_steps: int = 50
    tune_limit: int | None = 8000  # Training records of jr:world_all:qa (4 tasks interleaved).
    # Soft prompts on the frozen tuned model.
    prompt_length: int = 8
    pt_steps: int = 400
    pt_batch_size: int = 16
    pt_learning_rate: float = 0.1
    pt_limit: int | None = 4000
    kl_weight: float = 1.0  # lambda of PT+KL.
    num_paraphrases: int = 1  # Paraphrase rows per example in PT+KL batches.
    # Evaluation.
    eval_tasks: tuple[str, ...] = ("rel", "yn", "mc", "type")  # World tasks evaluated.
    eval_limit: int = 100  # Test passages per task (each under all 12 templates).
    eval_batch_size: int = 64
    n_resamples: int = 1000  # Bootstrap resamples in the report.
    # Optional: the tuned model on real tasks from the shared data.
    data_dir: str = ""  # '' = skip; else the folder holding boolq/, mmlu/, ...
    real_mixtures: tuple[str, ...] = ("jr:boolq:qa#all",)
    real_split: str = "validation"  # The split the real mixtures hold (BoolQ: validation).
    real_limit: int = 50
    train_eval_limit: int = 64  # Validation records of the trainer's held-out check.
    checkpoint_every: int = 500
    log_every: int = 50


def _template_ids(role: str) -> tuple[str, ...]:
    from jaxrobust.tasks import builtin

    return tuple(t.id for t in builtin.all_bank() if builtin.role(t.id) == role)


def _train(opts: StudyOptions, model, workdir: pathlib.Path, *, stage: str) -> dict[str, Any]:
    """One training stage; skipped when its metrics.json (written last) exists."""
    from jaxrobust import training
    from jaxrobust.training import data as training_data

    done = workdir / "metrics.json"
    if done.exists():
        print(f"[study] {stage}: complete, skipped ({workdir})", flush=True)
        return json.loads(done.read_text())
    tune = stage == "tune"
    kl = stage == "pt_kl"
    data = training_data.DataOptions(
        task=TASK,
        split="train",
        limit=opts.tune_limit if tune else opts.pt_limit,
        original_templates=_template_ids("observed"),
        # Tuning sees the observed templates only; prompts may also see paraphrases.
        held_out_templates=_template_ids("heldout") + (_template_ids("paraphrase") if tune else ()),
        num_paraphrases=opts.num_paraphrases if kl else 0,
        batch_size=opts.tune_batch_size if tune else opts.pt_batch_size,
        max_input_len=opts.max_input_len,
        eval_split="validation",
        eval_limit=opts.train_eval_limit,
        seed=opts.seed,
    )
    loss = training.LossOptions(kl_weight=opts.kl_weight if kl else 0.0, ce_rows="original")
    train_opts = training.TrainOptions(
        trainable=("model/.*",) if tune else ("prompt/.*",),
        prompt_length=0 if tune else opts.prompt_length,
        optimizer="adam",
        learning_rate=opts.tune_learning_rate if tune else opts.pt_learning_rate,
        warmup_steps=opts.tune_warmup_steps if tune else 0,
        grad_clip=1.0,
        num_steps=opts.tune_steps if tune else opts.pt_steps,
        checkpoint_every=opts.checkpoint_every,
        log_every=opts.log_every,
        seed=opts.seed,
    )
    print(f"[study] {stage}: training in {workdir}", flush=True)
    training.train(model, str(workdir), data, loss, train_opts)
    return json.loads(done.read_text())


def _tokenizer(opts: StudyOptions, out: pathlib.Path) -> pathlib.Path:
    from jaxrobust.study import vocab

    directory = out / "tokenizer"
    if (directory / "tokenizer.json").exists():
        print(f"[study] tokenizer: complete, skipped ({directory})", flush=True)
        return directory
    with files.atomic_path(directory, directory=True) as tmp:  # The stage completes whole.
        vocab.train(tmp, vocab_size=opts.vocab_size, seed=opts.seed)
    print(f"[study] tokenizer: {opts.vocab_size} pieces ({directory})", flush=True)
    return directory


def _evaluate(
    opts: StudyOptions, models, out: pathlib.Path, mixtures, limit: int, split: str = "test"
) -> None:
    from jaxrobust import evaluation

    options = evaluation.EvalOptions(
        split=split,
        limit=limit,
        batch_size=opts.eval_batch_size,
        max_input_len=opts.max_input_len,
        chunk_size=limit,
        progress=False,
    )
    statuses = evaluation.run(models, mixtures, str(out), options)
    for model, per_task in statuses.items():
        counts = {s: list(per_task.values()).count(s) for s in ("written", "resumed", "skipped")}
        print(f"[study] evaluated {model}: {len(per_task)} record files {counts}", flush=True)


def run(options: StudyOptions = StudyOptions(), gin_config: str = "") -> pathlib.Path:
    """Runs (or resumes) the study; returns the report folder."""
    import jaxrobust.tasks  # noqa: F401  (registers the world tasks)
    from jaxrobust import evaluation, training
    from jaxrobust.analysis import report as report_lib
    from jaxrobust.study import summary, vocab
    from jaxrobust.tasks import builtin

    opts = options
    out = pathlib.Path(opts.output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "study_options.json", dataclasses.asdict(opts))
    if gin_config:
        files.write_atomic(out / "operative_config.gin", gin_config)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[stage] = round(now - clock, 1)
        clock = now

    # ----------------------------------------------------------- tokenizer
    tokenizer_dir = _tokenizer(opts, out)
    lap("tokenizer")

    # ---------------------------------------------------------------- tune
    base = evaluation.ModelSpec(
        name="study-t5",
        preset=opts.preset,
        tokenizer=str(tokenizer_dir),
        observed_collections=("study",),
        seed=opts.seed,
    )
    _train(opts, base, out / "tune", stage="tune")
    hf_model = out / "tune" / "hf_model"
    for name in vocab.FILES:  # A complete HF directory: weights, config and tokenizer.
        if not (hf_model / name).exists():
            files.write_atomic(hf_model / name, (tokenizer_dir / name).read_bytes())
    tuned = training.trained_model_spec(base, str(out / "tune"), "tuned")
    lap("tune")

    # ------------------------------------------------------ evaluate tuned
    mixtures = [f"jr:{':'.join(builtin.TASKS[t])}#all" for t in opts.eval_tasks]
    _evaluate(opts, [tuned], out / "eval", mixtures, opts.eval_limit)
    lap("eval_tuned")

    # --------------------------------------------------------- soft prompts
    _train(opts, tuned, out / "pt", stage="pt")
    lap("pt")
    _train(opts, tuned, out / "pt_kl", stage="pt_kl")
    lap("pt_kl")
    prompted = [
        training.trained_model_spec(tuned, str(out / "pt"), "tuned+pt"),
        training.trained_model_spec(tuned, str(out / "pt_kl"), "tuned+pt_kl"),
    ]
    _evaluate(opts, prompted, out / "eval", mixtures, opts.eval_limit)
    lap("eval_prompts")

    # ------------------------------------------------ optional: real tasks
    if opts.data_dir:
        from jaxrobust.data import datasets

        previous = datasets.set_data_config(datasets.DataConfig(data_dir=opts.data_dir))
        try:
            real = list(opts.real_mixtures)
            _evaluate(opts, [tuned], out / "eval_real", real, opts.real_limit, opts.real_split)
            report_lib.write_report(out / "eval_real", n_resamples=opts.n_resamples, seed=opts.seed)
        finally:
            datasets.set_data_config(previous)
        lap("eval_real")

    # --------------------------------------------------------------- report
    report_dir = report_lib.write_report(out / "eval", n_resamples=opts.n_resamples, seed=opts.seed)
    summary.write(
        out / "eval",
        pathlib.Path(report_dir),
        MODEL_LABELS,
        baseline="tuned",
        tasks=builtin.TASKS,
        role=builtin.role,
        n_resamples=opts.n_resamples,
        seed=opts.seed,
    )
    lap("report")
    timings["total_this_run"] = round(sum(timings.values()), 1)
    files.write_atomic(out / "timings.json", json.dumps(timings, indent=2) + "\n")
    return pathlib.Path(report_dir)
