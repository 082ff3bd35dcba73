"""The built-in study: the whole mission end to end on generated data, on a CPU.

    python -m jaxrobust.main study     (gin_configs/runs/study.gin)

No pretrained weights and no download: the study pretrains its own small T5,
so every stage runs the code paths researchers use at scale.

1. ``tokenizer/``  a small BPE vocabulary trained on the world and the
   pretraining corpus (`study.vocab`), with span corruption's sentinels.
2. ``pretrain/``   span-corruption pretraining (`training.pretrain`) from random
   weights on generated text about the world (`study.corpus`): every word of
   every template and every answer word, in varied contexts, never a
   template's own sentences. ``pretrain/hf_model`` is the pretrained model.
3. ``tune/``       instruction tuning: `training.train` in full fine-tuning
   mode on the *observed* templates of the four world tasks
   (`jr:world_all:qa`, templates ``all_o*``), from the pretrained weights,
   on the gold answer's tokens (teacher forcing, as T0 and Flan were tuned;
   `StudyOptions.tune_objective`).
4. ``eval/``       `evaluation.run` of the tuned model on the observed,
   paraphrase and held-out templates of every world task (test passages).
5. Sun et al.'s four conditions, each from the tuned model, task loss on the
   observed templates only:
   ``pt/``    soft-prompt tuning of the frozen model (PT);
   ``pt_kl/`` the same plus lambda * KL(p_observed || p_paraphrase) on the
              paraphrase templates (PT+KL); CE on the observed rows only, so
              the paraphrases contribute no labels, only agreement;
   ``ft/``    full fine-tuning (FT); ``ft_kl/`` FT plus the KL term (FT+KL).
6. ``eval/``       the four conditions, on the same templates.
7. ``eval_dev/``   every model on the *dev* templates (``*_d*``), validation
   passages: the numbers the study's settings were chosen on (never test
   passages, never held-out templates).
8. ``report/``     `report.write_report` (the papers' tables, per-template
   plots) and `study.summary` (accuracy by role with bootstrap CIs, the
   observed vs held-out gap, each condition's paired effect on held-out
   accuracy and on the gap; ``study.md``, ``study.json``, ``study.png``).

Held-out (``*_h*``) and dev (``*_d*``) templates are never trained on: every
training stage names them as held out, and the trainer checks and records it
(``<stage>/template_split.json``).

Seeds: `StudyOptions.seeds` (e.g. ``--gin.SEEDS=[0,1,2]``) runs the whole study
once per seed under ``seed_<s>/`` and writes ``report/`` with the mean and
across-seed spread beside each seed's CIs (`study.seeds`); empty, one study with
`seed` in the output folder itself. With CPUs for more than one pinned study,
the seeds run side by side as worker processes (`study.workers`), each pinned to
CPUs of its own: the same bytes as one after another.

Resuming: a stage whose final output exists is skipped (a training stage's
``metrics.json``, the tokenizer's ``tokenizer.json``); an interrupted training
stage resumes from its last Orbax checkpoint and an interrupted evaluation
from its last committed chunk, so re-running the command finishes the study.
Runs are byte-for-byte deterministic on one CPU type, whatever the load and
core count (tests/test_study_repro.py); ``timings.json`` holds each stage's
seconds and the peak memory.

Optionally (`StudyOptions.data_dir` and `real_mixtures`) the tuned model is
also evaluated on real tasks from the shared data: the same runner and report
(``eval_real/``). Its vocabulary was trained on the world only, so expect
chance-level numbers; the point is the code path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import time
from typing import Any

from jaxrobust.storage import files

STAGES = (
    "tokenizer",
    "pretrain",
    "tune",
    "eval_tuned",
    "pt",
    "pt_kl",
    "ft",
    "ft_kl",
    "eval_conditions",
    "eval_dev",
    "report",
)
TASK = "jr:world_all:qa"  # The training view of the four world tasks (tasks/builtin.py).
# The conditions (Sun et al. 2023), each trained from the tuned model: stage -> model name.
CONDITIONS = {"pt": "tuned+pt", "pt_kl": "tuned+pt_kl", "ft": "tuned+ft", "ft_kl": "tuned+ft_kl"}
MODEL_LABELS = {
    "tuned": "tuned",
    "tuned+pt": "+ PT",
    "tuned+pt_kl": "+ PT+KL",
    "tuned+ft": "+ FT",
    "tuned+ft_kl": "+ FT+KL",
}
EVAL_ROLES = ("observed", "paraphrase", "heldout")  # Reported, on test passages.


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """Every setting of the study; `gin_configs/runs/study.gin` binds them."""

    output_dir: str = "study_output"  # Everything goes here; re-running resumes.
    seed: int = 0  # Model init, data order, corpus, prompt init and the bootstrap.
    seeds: tuple[int, ...] = ()  # Several: one study per seed under seed_<s>/, then report/.
    preset: str = "study-small"  # T5 preset (models/t5_config.py) pretrained here.
    # CPUs the study pins itself to (0: every CPU it may use). XLA CPU sizes its thread
    # pools by the CPUs a process may use, and the bits of its results follow the thread
    # count, so a fixed count makes the bytes the same on 1 or 16 cores (README).
    cpu_threads: int = 1
    # Several seeds at once, one worker process per seed on `cpu_threads` CPUs of its own,
    # as many as the CPUs allow (`study.workers`); the same bytes as one after another.
    parallel_seeds: bool = True
    vocab_size: int = 1024  # BPE vocabulary trained on the world and the corpus.
    max_input_len: int = 128  # Input tokens (world inputs have at most ~90).
    # Span-corruption pretraining on the generated corpus (0 steps: start from random).
    pretrain_documents: int = 4000  # Documents of the corpus (study.corpus).
    pretrain_steps: int = 1000
    pretrain_max_len: int = 96  # Document tokens kept (the first 95, then EOS).
    pretrain_batch_size: int = 32
    pretrain_learning_rate: float = 2e-3
    # Instruction tuning (full fine-tuning on the observed templates).
    tune_steps: int = 7000
    tune_batch_size: int = 32
    tune_learning_rate: float = 2e-3
    tune_warmup_steps: int = 50
    tune_decay: str = "cosine"  # 'constant', 'linear' or 'cosine' (to 0 at the last step).
    tune_limit: int | None = 64000  # Training records of jr:world_all:qa (4 tasks interleaved).
    # The tuning loss (`training.LossOptions.objective`): 'target', the gold answer's tokens
    # over the vocabulary, as T0 and Flan were tuned; 'options', a softmax over the options.
    tune_objective: str = "target"
    # Soft prompts on the frozen tuned model (PT, PT+KL).
    prompt_length: int = 8
    pt_steps: int = 400
    pt_batch_size: int = 16
    pt_learning_rate: float = 0.1
    pt_limit: int | None = 4000
    # Full fine-tuning of the tuned model (FT, FT+KL).
    ft_steps: int = 400
    ft_learning_rate: float = 5e-4
    kl_weight: float = 1.0  # lambda of PT+KL and FT+KL.
    num_paraphrases: int = 1  # Paraphrase rows per example in the +KL batches.
    # Evaluation.
    eval_tasks: tuple[str, ...] = ("rel", "yn", "mc", "type")  # World tasks evaluated.
    eval_limit: int = 100  # Test passages per task (each under all 12 templates).
    dev_limit: int = 100  # Validation passages per task under the dev templates.
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


def _template_ids(*roles: str) -> tuple[str, ...]:
    from jaxrobust.tasks import builtin

    return tuple(t.id for t in builtin.all_bank() if builtin.role(t.id) in roles)


def _train(opts: StudyOptions, model, workdir: pathlib.Path, *, stage: str) -> dict[str, Any]:
    """One training stage; skipped when its metrics.json (written last) exists."""
    from jaxrobust import training
    from jaxrobust.training import data as training_data

    done = workdir / "metrics.json"
    if done.exists():
        print(f"[study] {stage}: complete, skipped ({workdir})", flush=True)
        return json.loads(done.read_text())
    tune = stage == "tune"
    kl = stage.endswith("_kl")
    prompt = stage.startswith("pt")
    # Tuning sees the observed templates only; the +KL conditions also the paraphrases.
    # Held-out and dev templates are never trained on.
    never = _template_ids("heldout", "dev") + (() if kl else _template_ids("paraphrase"))
    data = training_data.DataOptions(
        task=TASK,
        split="train",
        limit=opts.tune_limit if tune else opts.pt_limit,
        original_templates=_template_ids("observed"),
        held_out_templates=never,
        num_paraphrases=opts.num_paraphrases if kl else 0,
        batch_size=opts.tune_batch_size if tune else opts.pt_batch_size,
        max_input_len=opts.max_input_len,
        eval_split="validation",
        eval_limit=opts.train_eval_limit,
        seed=opts.seed,
    )
    loss = training.LossOptions(
        kl_weight=opts.kl_weight if kl else 0.0,
        ce_rows="original",
        objective=opts.tune_objective if tune else "options",
    )
    if tune:
        lr, steps, warmup, decay = (
            opts.tune_learning_rate,
            opts.tune_steps,
            opts.tune_warmup_steps,
            opts.tune_decay,
        )
    elif prompt:
        lr, steps, warmup, decay = opts.pt_learning_rate, opts.pt_steps, 0, "constant"
    else:
        lr, steps, warmup, decay = opts.ft_learning_rate, opts.ft_steps, 0, "constant"
    train_opts = training.TrainOptions(
        trainable=("prompt/.*",) if prompt else ("model/.*",),
        prompt_length=opts.prompt_length if prompt else 0,
        optimizer="adam",
        learning_rate=lr,
        warmup_steps=warmup,
        decay=decay,
        grad_clip=1.0,
        num_steps=steps,
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
        vocab.train(
            tmp, vocab_size=opts.vocab_size, seed=opts.seed, documents=opts.pretrain_documents
        )
    print(f"[study] tokenizer: {opts.vocab_size} pieces ({directory})", flush=True)
    return directory


def _pretrain(opts: StudyOptions, base, out: pathlib.Path, tokenizer_dir: pathlib.Path):
    """Span corruption on the corpus; the base model with the pretrained weights."""
    from jaxrobust.study import corpus, vocab
    from jaxrobust.training import pretrain

    work = out / "pretrain"
    if not opts.pretrain_steps:
        return base
    if (work / "metrics.json").exists():
        print(f"[study] pretrain: complete, skipped ({work})", flush=True)
    else:
        print(f"[study] pretrain: span corruption in {work}", flush=True)
        pretrain.pretrain(
            base,
            work,
            corpus.documents(opts.pretrain_documents, opts.seed),
            vocab.sentinel_ids(),
            pretrain.PretrainOptions(
                num_steps=opts.pretrain_steps,
                batch_size=opts.pretrain_batch_size,
                learning_rate=opts.pretrain_learning_rate,
                max_len=opts.pretrain_max_len,
                checkpoint_every=opts.checkpoint_every,
                log_every=opts.log_every,
                seed=opts.seed,
            ),
        )
    _complete_hf(work / "hf_model", tokenizer_dir)
    return dataclasses.replace(base, checkpoint=str(work / "hf_model"))


def _complete_hf(hf_model: pathlib.Path, tokenizer_dir: pathlib.Path) -> None:
    """A complete HF directory: weights, config and the study's tokenizer."""
    from jaxrobust.study import vocab

    for name in vocab.FILES:
        if not (hf_model / name).exists():
            files.write_atomic(hf_model / name, (tokenizer_dir / name).read_bytes())


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
    """Runs (or resumes) the study; returns the report folder.

    The process is pinned to `options.cpu_threads` CPUs while it runs (Linux), before
    JAX starts its CPU backend; a backend already started keeps its thread count."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    allowed = sorted(getaffinity(0)) if getaffinity else []
    if _in_workers(options, allowed):
        from jaxrobust.study import seeds, workers

        folders = workers.run_seeds(options, gin_config, allowed)
        report = pathlib.Path(options.output_dir).absolute() / "report"
        return seeds.write(folders, report, MODEL_LABELS, baseline="tuned")
    if options.cpu_threads and len(allowed) > options.cpu_threads:
        os.sched_setaffinity(0, allowed[: options.cpu_threads])
    try:
        return _run(options, gin_config)
    finally:
        if allowed:
            os.sched_setaffinity(0, allowed)


def _in_workers(options: StudyOptions, allowed: list[int]) -> bool:
    """Whether `run` spreads the seeds over worker processes (`study.workers`)."""
    if not (options.parallel_seeds and options.cpu_threads and len(options.seeds) > 1):
        return False
    return len(allowed) >= 2 * options.cpu_threads


def _run(options: StudyOptions, gin_config: str) -> pathlib.Path:
    if options.seeds:
        from jaxrobust.study import seeds

        out = pathlib.Path(options.output_dir).absolute()
        out.mkdir(parents=True, exist_ok=True)
        folders = []
        for s in options.seeds:
            sub = dataclasses.replace(options, seed=s, seeds=(), output_dir=str(out / f"seed_{s}"))
            print(f"[study] seed {s} of {list(options.seeds)}: {sub.output_dir}", flush=True)
            run_one(sub, gin_config)
            folders.append(pathlib.Path(sub.output_dir))
        return seeds.write(folders, out / "report", MODEL_LABELS, baseline="tuned")
    return run_one(options, gin_config)


def run_one(options: StudyOptions, gin_config: str = "") -> pathlib.Path:
    """One seed's study (`options.seed`); returns its report folder."""
    import jaxrobust.tasks  # noqa: F401  (registers the world tasks)
    from jaxrobust import evaluation, training
    from jaxrobust.analysis import report as report_lib
    from jaxrobust.study import summary
    from jaxrobust.tasks import builtin

    opts = options
    out = pathlib.Path(opts.output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "study_options.json", dataclasses.asdict(opts))
    if gin_config:
        files.write_atomic(out / "operative_config.gin", gin_config)
    timings: dict[str, float] = {}
    clock = start = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[stage] = round(now - clock, 1)
        clock = now
        done = STAGES.index(stage) + 1 if stage in STAGES else len(STAGES)
        print(
            f"[study] stage {done}/{len(STAGES)} {stage}: {timings[stage]:.0f} s "
            f"(study so far {now - start:.0f} s)",
            flush=True,
        )

    # ----------------------------------------------------------- tokenizer
    tokenizer_dir = _tokenizer(opts, out)
    lap("tokenizer")

    # ------------------------------------------------------------ pretrain
    base = evaluation.ModelSpec(
        name="study-t5",
        preset=opts.preset,
        tokenizer=str(tokenizer_dir),
        observed_collections=("study",),
        seed=opts.seed,
    )
    base = _pretrain(opts, base, out, tokenizer_dir)
    lap("pretrain")

    # ---------------------------------------------------------------- tune
    _train(opts, base, out / "tune", stage="tune")
    _complete_hf(out / "tune" / "hf_model", tokenizer_dir)
    tuned = training.trained_model_spec(base, str(out / "tune"), "tuned")
    lap("tune")

    # ------------------------------------------------------ evaluate tuned
    mixtures = [f"jr:{':'.join(builtin.TASKS[t])}#{r}" for t in opts.eval_tasks for r in EVAL_ROLES]
    _evaluate(opts, [tuned], out / "eval", mixtures, opts.eval_limit)
    lap("eval_tuned")

    # ---------------------------------------------------------- conditions
    conditions = []
    for stage, name in CONDITIONS.items():
        _train(opts, tuned, out / stage, stage=stage)
        if (out / stage / "hf_model").is_dir():
            _complete_hf(out / stage / "hf_model", tokenizer_dir)
        conditions.append(training.trained_model_spec(tuned, str(out / stage), name))
        lap(stage)
    _evaluate(opts, conditions, out / "eval", mixtures, opts.eval_limit)
    lap("eval_conditions")

    # ----------------------------------------------------------------- dev
    dev = [f"jr:{':'.join(builtin.TASKS[t])}#dev" for t in opts.eval_tasks]
    _evaluate(opts, [tuned, *conditions], out / "eval_dev", dev, opts.dev_limit, "validation")
    lap("eval_dev")

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
        dev_dir=out / "eval_dev",
    )
    lap("report")
    timings["total_this_run"] = round(sum(timings.values()), 1)
    # Peak resident memory of this process (Linux reports KiB).
    timings["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    files.write_atomic(out / "timings.json", json.dumps(timings, indent=2) + "\n")
    return pathlib.Path(report_dir)
