"""The training program: soft-prompt tuning and fine-tuning that make a model robust to
instruction paraphrases (Sun et al. 2023, "Evaluating the Zero-shot Robustness of
Instruction-tuned Language Models").

Every batch holds each example under its original (observed) instruction and
under K paraphrased instructions, and the loss (`training.losses`) adds to the
task's cross-entropy a KL term that pulls the paraphrases' answer distribution
towards the original's and, optionally, a representation term. The model stays
frozen and a `[P, D]` prompt (`models/prompts.py`) trains (PT), or the model
trains too (FT), or any subset: `TrainOptions.trainable` is a regex list over
parameter paths (`training.optimizer`).

Templates and batches come from `training.data` (`DataOptions`): originals,
paraphrases and held-out templates of a task, the split written to
`<workdir>/template_split.json` and checked on resume.

`train` reads top to bottom like big_vision's `train.py`: mesh, model, data,
optimizer, shard, step, restore, evals, loop, outputs. Outputs under `workdir`:

    checkpoints/<step>/     Orbax: trainable params, optimizer state, step, data position
    tb/                     TensorBoard event files (tensorboardX)
    template_split.json     which templates were originals / paraphrases / held out
    train_settings.json     the settings the checkpoints were trained with (checked on resume)
    prompt.npy              the learned prompt [P, D] (evaluation.ModelSpec.soft_prompt)
    hf_model/               the fine-tuned model as an HF directory of its family (FT runs)
    metrics.json            final training and held-out metrics (written last)

Resume: re-running the same command goes on from the latest checkpoint. A
re-run with settings that change what the checkpoints hold (learning rate,
prompt length, loss weights, the base weights, ...; `train_settings.json`) is
refused naming them, as is another template split; a re-run of a finished
training changes nothing (its `metrics.json` is kept). One run per workdir at a
time: process 0 holds the workdir's lock (`storage.files.lock_folder`).

Multi-host: every process runs the same program; process 0 alone writes files
(`distributed.is_writer`); Orbax coordinates its own checkpoint writes.

`workdir` may be local or on an object store: every file goes through
`storage.files` (a `gs://` workdir stays `gs://`). Orbax writes local and
`gs://` checkpoints itself; on another store (`memory://`, which the tests use)
it writes to a local staging folder and each saved step is copied onto
`<workdir>/checkpoints/<step>/` (an `.uploaded` marker last), and a resume
downloads the marked steps first (one process only: a multi-host run there is
refused). TensorBoard event files are appended through
`files.AppendFile` on any store.

Progress: a tqdm bar on stderr (steps, rate, ETA; on a terminal only, process 0),
and a console line every `log_every` steps with each loss term.

The model is any registered family (`inference.families`): `inference.load_model`
builds it, its engine adapter tokenises and lays out the batches
(`training.data`) and its differentiable scorers make the loss
(`training.losses`), so a soft prompt trains on LLaMA as on T5.

Gin never appears here: `gin_configs/runs/train_prompt.gin` binds `train` and
the option dataclasses, and `jaxrobust.main train_prompt` calls it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from etils import epath

from jaxrobust import evaluation, inference
from jaxrobust.data import tuning
from jaxrobust.evaluation import guards
from jaxrobust.models import prompts
from jaxrobust.parallel import distributed, partitioning
from jaxrobust.storage import files
from jaxrobust.tasks import registry
from jaxrobust.training.checkpointing import Checkpoints, orbax_writes, summary_writer
from jaxrobust.training.checkpointing import say as _say
from jaxrobust.training.data import (
    DataOptions,
    ParaphraseBatches,
    encode_examples,
    heldout_batches,
    split_templates,
)
from jaxrobust.training.loss import losses
from jaxrobust.training.optimizer import make_optimizer, trainable_mask
from jaxrobust.training.options import (
    LossOptions,
    TrainOptions,
    run_settings,
    settings_difference,
)

log = logging.getLogger(__name__)
Array = jax.Array

# ---------------------------------------------------------------------------
# Model and prompt.
# ---------------------------------------------------------------------------


def prompt_initializer(options: TrainOptions, embedding: Array, tokenizer: Any):
    """The initializer of a new prompt (`TrainOptions.prompt_init`) from the model's
    token embedding `[V, D]`."""
    kind, _, arg = options.prompt_init.partition(":")
    if kind == "vocab":
        return prompts.from_sampled_vocab(embedding, options.prompt_init_population)
    if kind == "text":
        ids = tokenizer.encode(arg, add_eos=False)
        return prompts.from_text(embedding, ids, options.prompt_init_population)
    if kind == "file":
        return prompts.from_file(arg)
    raise ValueError(f"prompt_init {options.prompt_init!r}: expected 'vocab', 'text:..', 'file:..'")


# ---------------------------------------------------------------------------
# Train step.
# ---------------------------------------------------------------------------


def make_train_step(config, loss_opts: LossOptions, tx, mask, generation: bool = False):
    """`(state, batch) -> (state, metrics)`; frozen leaves are returned untouched."""

    def step(state, batch):
        def loss_fn(params):
            return losses(config, params, batch, loss_opts, generation)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        metrics.pop("predictions", None)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        # Frozen leaves skip even `p + 0` (which would turn -0.0 into 0.0).
        params = jax.tree_util.tree_map(
            lambda m, p, u: p + u.astype(p.dtype) if m else p, mask, state["params"], updates
        )
        trained = [
            g for m, g in zip(jax.tree.leaves(mask), jax.tree.leaves(grads), strict=True) if m
        ]
        metrics["grad_norm"] = optax.global_norm(trained)
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return step


def _check_targets(encoded, loss: LossOptions, template_ids) -> None:
    """Token-level KL between rows needs one target text per example under every template."""
    if not (encoded.generation and loss.kl_weight and len(template_ids) > 1):
        return
    for i in range(len(encoded.answer)):
        texts = {tuple(encoded.options[t][i][0]) for t in range(len(template_ids))}
        if len(texts) > 1:
            raise ValueError(
                f"example {i} has {len(texts)} different target texts under templates "
                f"{list(template_ids)}: the token-level KL (kl_weight={loss.kl_weight}) "
                "compares one target's tokens; expected one target per example, or "
                "LossOptions.objective='options'"
            )


# ---------------------------------------------------------------------------
# Held-out evaluation.
# ---------------------------------------------------------------------------


def evaluate_heldout(config, params, batches, loss_opts: LossOptions, mesh, rules) -> dict:
    """Mean KL(p_original || p_held_out), accuracy and entropy on held-out templates.

    `params` may lack 'prompt' (the model alone). Also returns the share of the
    most frequent prediction on held-out rows (1.0 = a constant answer).
    """
    # Replicated outputs: every process can read them (multi-host).
    fn = partitioning.partition(
        lambda p, b: {**losses(config, p, b, loss_opts)[1], "weight": b["weight"]},
        mesh,
        rules,
        out_shardings=partitioning.replicated(mesh),
    )
    totals: dict[str, float] = {}
    preds = []
    n = 0.0
    for batch in batches:
        m = jax.device_get(fn(params, batch))
        w = float(m["weight"].sum())
        n += w
        for k in ("kl", "accuracy_paraphrase", "accuracy_original", "entropy", "ce"):
            totals[k] = totals.get(k, 0.0) + float(m[k]) * w
        preds.append(np.asarray(m["predictions"])[m["weight"] > 0, 1:].ravel())
    out = {k: v / n for k, v in totals.items()}
    allp = np.concatenate(preds)
    out["majority_share"] = float(np.bincount(allp).max() / len(allp))
    return out


# ---------------------------------------------------------------------------
# Run files: the template split and the Orbax checkpoints.
# ---------------------------------------------------------------------------


def _rate_eta(done: int, left: int, seconds: float) -> str:
    """'2.5 steps/s, ETA 0:01:04' (the console line also carries them into logs)."""
    rate = done / max(seconds, 1e-9)
    eta = datetime.timedelta(seconds=round(left / rate)) if rate > 0 else "?"
    return f"{rate:.1f} steps/s, ETA {eta}"


def _check_split(work: epath.Path, recorded: dict) -> None:
    """Refuses a resumed run whose `template_split.json` records another split."""
    split_file = work / "template_split.json"
    if split_file.exists() and json.loads(split_file.read_text()) != json.loads(
        json.dumps(recorded)
    ):
        raise ValueError(
            f"{split_file} records another template split or data options; use a new workdir"
        )


def _record_split(work: epath.Path, recorded: dict) -> None:
    """Writes `template_split.json` (checked by `_check_split` first)."""
    if distributed.is_writer():
        files.write_atomic(work / "template_split.json", json.dumps(recorded, indent=2))


def _has_checkpoints(work: epath.Path) -> bool:
    directory = work / "checkpoints"
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _check_settings(work: epath.Path, settings: dict, loaded: bool, write: bool = True) -> None:
    """Refuses to resume `work`'s checkpoints with other settings (naming them); records
    the settings of a fresh run (`write`). Before the model loads (`loaded=False`) the
    weights' digest is not compared; after, it is."""
    path = work / "train_settings.json"
    if _has_checkpoints(work) and path.exists():
        differ = settings_difference(json.loads(path.read_text()), settings, loaded)
        if differ:
            raise ValueError(
                f"{work} holds checkpoints trained with other settings: {'; '.join(differ)}. "
                "Resuming would mix them: use a new WORKDIR (or the settings it was trained "
                "with)"
            )
        return
    if _has_checkpoints(work) and not loaded:
        log.warning("%s: no train_settings.json (an older run); resuming unchecked", work)
    if loaded and write and distributed.is_writer():
        files.write_atomic(path, json.dumps(settings, indent=2, sort_keys=True))


def train(
    model: evaluation.ModelSpec,
    workdir: str,
    data: DataOptions,
    loss: LossOptions = LossOptions(),
    options: TrainOptions = TrainOptions(),
    task_modules: Sequence[str] = ("jaxrobust.tasks",),
    gin_config: str = "",
) -> dict[str, Any]:
    """Trains a prompt and/or the model; see the module docstring. Resumes from `workdir`.

    Returns:
      {'params': final params tree, 'metrics': final train metrics,
       'heldout': held-out metrics, 'split': TemplateSplit, 'step': int}.
    """
    work = files.path(workdir)
    if not orbax_writes(work) and jax.process_count() > 1:
        raise ValueError(
            f"{workdir}: Orbax writes local and gs:// folders only; checkpoints for another "
            f"store are staged on one host, and this run has {jax.process_count()} processes: "
            "use a gs:// or shared local WORKDIR"
        )
    with guards.writer_lock(work, "train_prompt"):
        return _train(model, work, data, loss, options, task_modules, gin_config)


def _train(model, work, data, loss, options, task_modules, gin_config) -> dict[str, Any]:
    """`train`'s program, run while process 0 holds the workdir's lock."""
    # The model's own collections first, so their banks' observed:<name> loads.
    tuning.declare_names(model.observed_collections)
    for module in task_modules:
        importlib.import_module(module)

    # ----------------------------------------------------------------- mesh
    # Settings first: a resume with other settings, or a batch the mesh cannot
    # split, is refused before the model loads.
    mesh = partitioning.make_mesh(data=-1, model=options.model_parallel)
    if data.batch_size % mesh.shape[partitioning.DATA]:
        raise ValueError(
            f"BATCH_SIZE={data.batch_size} must be a multiple of the mesh's data axis "
            f"({mesh.shape[partitioning.DATA]}; mesh {dict(mesh.shape)})"
        )
    _check_settings(work, run_settings(model, loss, options, None), loaded=False)
    # The templates, and the splits they are read from (a data set lacking one is named
    # with the splits it has: BoolQ holds validation only).
    split = split_templates(data)
    some_task = next(iter(split.task_names.values()))
    for data_split in dict.fromkeys((data.split, data.eval_split or data.split)):
        registry.split_for(some_task, data_split)

    # ---------------------------------------------------------------- model
    # The base model: HF checkpoint or seeded random weights, in their shardings;
    # `rules` are the standard ones fitted to the model's sizes.
    base = inference.load_model(model, mesh)
    config, tokenizer, rules, family = base.config, base.tokenizer, base.rules, base.family
    adapter = base.adapter()
    settings = run_settings(model, loss, options, base.weights_digest)
    _check_settings(work, settings, loaded=True, write=False)

    # ----------------------------------------------------------------- data
    # Read and encoded before the first write: a data error (a split the data set
    # lacks, ...) leaves the workdir as it was.
    recorded_split = {**dataclasses.asdict(split), "data_options": dataclasses.asdict(data)}
    _check_split(work, recorded_split)
    train_ids = split.original + split.paraphrase
    fmt = model.prompt_format
    encoded = encode_examples(
        split, train_ids, adapter, data, data.split, data.limit, fmt, loss.objective == "target"
    )
    _check_targets(encoded, loss, train_ids)
    batches = ParaphraseBatches(encoded, len(split.original), data, adapter)
    held = encode_examples(
        split,
        split.original + split.held_out,
        adapter,
        data,
        data.eval_split or data.split,
        data.eval_limit,
        fmt,
    )
    eval_batches = heldout_batches(held, len(split.original), data.batch_size, adapter)
    _check_settings(work, settings, loaded=True)
    _record_split(work, recorded_split)

    # ------------------------------------------------------------ optimizer
    params: dict[str, Any] = {"model": base.params}
    if options.prompt_length:
        init = prompt_initializer(options, family.token_embedding(base.params), tokenizer)
        module = prompts.Prompt(options.prompt_length, config.emb_dim, init)
        params["prompt"], _ = partitioning.init_sharded(
            module.init, jax.random.PRNGKey(options.seed), mesh, rules
        )
    mask = trainable_mask(params, options.trainable)
    if any(jax.tree.leaves(mask["model"])) and family.export_hf is None:
        raise ValueError(
            f"model {model.name!r}: family {family.name!r} cannot export a fine-tuned model "
            f"(Family.export_hf is None); train the prompt only (trainable={options.trainable})"
        )
    tx = make_optimizer(options, mask)

    # ---------------------------------------------------------------- shard
    opt_state = partitioning.partition(tx.init, mesh, rules)(params)
    step0 = jax.device_put(jnp.zeros((), jnp.int32), partitioning.replicated(mesh))
    state = {"step": step0, "params": params, "opt_state": opt_state}
    state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
    batch_shardings = {
        k: partitioning.batch_sharding(mesh, v.ndim) for k, v in batches.batch(0).items()
    }
    eval_batches = [
        {k: jax.device_put(v, partitioning.batch_sharding(mesh, v.ndim)) for k, v in b.items()}
        for b in eval_batches
    ]

    # ---------------------------------------------------------------- step
    train_step = partitioning.partition(
        make_train_step(config, loss, tx, mask, encoded.generation),
        mesh,
        rules,
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(state_shardings, partitioning.replicated(mesh)),
        donate_argnums=(0,),
    )

    # ------------------------------------------------------------- restore
    # 1. The base model (ModelSpec: HF checkpoint or seeded random weights) gave
    #    every parameter its starting value, frozen ones for good.
    # 2. The prompt was initialised from TrainOptions.prompt_init.
    # 3. The latest checkpoint in workdir, if any, replaces the trainable
    #    parameters, the optimizer state and the step; the step is the data
    #    position (batch k is a pure function of the seed and k).
    ckpts = Checkpoints(work / "checkpoints", options.keep_checkpoints, mask)
    state = ckpts.restore_latest(state)
    at = int(state["step"])
    if at > options.num_steps:
        ckpts.close()
        raise ValueError(
            f"{work} holds a checkpoint at step {at}, past NUM_STEPS={options.num_steps}: use "
            "a new WORKDIR, or NUM_STEPS >= that step"
        )
    if at == options.num_steps and (work / "metrics.json").exists():
        # Finished before: its outputs stay as they are (the final step's training
        # metrics exist only in metrics.json).
        ckpts.close()
        finished = json.loads((work / "metrics.json").read_text())
        log.warning("%s: finished at step %d before; metrics.json kept", work, at)
        return {
            "params": state["params"],
            "metrics": finished["train"],
            "heldout": finished["heldout"],
            "split": split,
            "step": at,
        }

    def save(st, step):
        position = {
            "step": step,
            "examples_seen": step * data.batch_size,
            "epoch_size": batches.num_examples,
        }
        ckpts.save(st, step, position)

    # --------------------------------------------------------------- evals
    writer = summary_writer(work / "tb") if distributed.is_writer() else None

    def run_evals(st, step) -> dict:
        heldout = evaluate_heldout(config, st["params"], eval_batches, loss, mesh, rules)
        if writer:
            for k, v in heldout.items():
                writer.add_scalar(f"heldout/{k}", v, step)
        _say(
            f"step {step:>6} heldout | kl {heldout['kl']:.4f} "
            f"acc {heldout['accuracy_paraphrase']:.3f} "
            f"(original {heldout['accuracy_original']:.3f}) entropy {heldout['entropy']:.3f}"
        )
        return heldout

    # ---------------------------------------------------------------- loop
    step = int(state["step"])
    metrics: dict[str, float] = {}
    if gin_config and writer:
        writer.add_text("gin_config", gin_config, step)
    # Steps, rate and ETA on a terminal (process 0); hidden in logs and tests.
    bar = tqdm.tqdm(
        total=options.num_steps,
        initial=step,
        unit="step",
        desc="train",
        file=sys.stderr,
        disable=None if distributed.is_writer() else True,
        dynamic_ncols=True,
    )
    start, start_step = time.monotonic(), step
    while step < options.num_steps:
        batch = {k: jax.device_put(v, batch_shardings[k]) for k, v in batches.batch(step).items()}
        state, m = train_step(state, batch)
        step += 1
        bar.update(1)
        if step % options.log_every == 0 or step == options.num_steps:
            metrics = {k: float(v) for k, v in jax.device_get(m).items()}
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(f"train/{k}", v, step)
            _say(
                f"step {step:>6}/{options.num_steps} | loss {metrics['loss']:.4f} "
                f"ce {metrics['ce']:.4f} kl {metrics['kl']:.4f} rep {metrics['rep']:.4f} | "
                f"acc {metrics['accuracy']:.3f} | "
                + _rate_eta(step - start_step, options.num_steps - step, time.monotonic() - start)
            )
        if options.eval_every and step % options.eval_every == 0 and step < options.num_steps:
            run_evals(state, step)
        if step % options.checkpoint_every == 0 or step == options.num_steps:
            save(state, step)
    bar.close()
    heldout = run_evals(state, step)
    ckpts.close()
    if writer:
        writer.close()

    # ------------------------------------------------------------- outputs
    final = state["params"]
    if distributed.is_writer():
        if "prompt" in final:
            prompts.save_prompt(work / "prompt.npy", final["prompt"]["prompt"])
        if any(jax.tree.leaves(mask["model"])):
            family.export_hf(final["model"], config, work / "hf_model")
        # Last, and whole: the study takes an existing metrics.json for a finished stage.
        files.write_atomic(
            work / "metrics.json",
            json.dumps({"step": step, "train": metrics, "heldout": heldout}, indent=2),
        )
    return {"params": final, "metrics": metrics, "heldout": heldout, "split": split, "step": step}


def trained_model_spec(base: evaluation.ModelSpec, workdir: str, name: str) -> evaluation.ModelSpec:
    """The `ModelSpec` that evaluates a training run's result: its prompt and/or model."""
    work = files.path(workdir)
    changes: dict[str, Any] = {"name": name}
    if (work / "prompt.npy").exists():
        changes["soft_prompt"] = str(work / "prompt.npy")
    if (work / "hf_model").is_dir():
        changes["checkpoint"] = str(work / "hf_model")
        changes["tokenizer"] = base.tokenizer or base.checkpoint
    return dataclasses.replace(base, **changes)
