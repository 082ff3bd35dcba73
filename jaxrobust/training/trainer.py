"""Soft-prompt tuning and fine-tuning that make a model robust to instruction paraphrases.

The method of Sun et al. (2023, "Evaluating the Zero-shot Robustness of
Instruction-tuned Language Models"): every batch holds each example under its
original (observed) instruction and under K paraphrased instructions, and

    loss = ce_weight * CE + kl_weight * KL(p_original || p_paraphrase)
           + rep_weight * (1 - cos(pooled_original, pooled_paraphrase))

CE is rank classification's cross-entropy over the answer options (softmax of
the options' log-likelihoods; over the gold target's tokens for a task without
options); p is the distribution over the answer options (per target token for
generation tasks) with the original side's gradient stopped unless configured;
pooled are mean final encoder states. The model stays frozen and a `[P, D]`
prompt (`models/prompts.py`) trains (PT), or the model trains too (FT), or any
subset: what trains is a regex list over parameter paths (`prompt/prompt`,
`model/encoder/layers_0/attention/query/kernel`, ...) turned into
`optax.multi_transform` with `set_to_zero` for the rest, so frozen parameters
get neither optimizer state nor updates.

Templates and batches come from `jaxrobust.training.data` (`DataOptions`):
originals, paraphrases and held-out templates of a task, the split written to
`<workdir>/template_split.json` and checked on resume.

`train` reads top to bottom like big_vision's `train.py`: mesh, data, model and
optimizer, shard, step, restore, evals, loop. Outputs under `workdir`:

    checkpoints/<step>/     Orbax: trainable params, optimizer state, step, data position
    tb/                     TensorBoard event files (tensorboardX)
    template_split.json     which templates were originals / paraphrases / held out
    prompt.npy              the learned prompt [P, D] (evaluation.ModelSpec.soft_prompt)
    hf_model/               the fine-tuned model as an HF T5 directory (FT runs)
    metrics.json            final training and held-out metrics

Gin never appears here: `gin_configs/runs/train_prompt.gin` binds `train` and the
option dataclasses (`DataOptions` from `training_data`), and `jaxrobust.main
train_prompt` calls it. T5 only for now (the decoder-only path waits for LLaMA's
differentiable option scorer).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import pathlib
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxrobust import checkpoints, evaluation, inference
from jaxrobust.models import layers, prompts, t5, t5_config
from jaxrobust.parallel import partitioning
from jaxrobust.training.data import (
    DataOptions,
    ParaphraseBatches,
    encode_examples,
    heldout_batches,
    split_templates,
)

log = logging.getLogger(__name__)
Array = jax.Array
# Finite stand-in for an absent option's log-likelihood (-inf would make 0 * inf).
ABSENT = -1e9

# ---------------------------------------------------------------------------
# Options.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The loss terms and their weights."""

    ce_weight: float = 1.0  # Task cross-entropy (options, or target tokens).
    kl_weight: float = 0.0  # KL(p_original || p_paraphrase); Sun et al.'s lambda.
    rep_weight: float = 0.0  # 1 - cosine of pooled encoder states, original vs paraphrase.
    ce_rows: str = "all"  # CE on 'all' rows or on the 'original' rows only.
    stop_gradient_original: bool = True  # No gradient through the original side of KL/rep.
    average: bool = False  # Option scores: mean per-token log-likelihood instead of the sum.


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """What trains, the optimizer, the schedule and the bookkeeping."""

    # Regexes (re.fullmatch) over '/'-joined parameter paths; a match trains.
    # PT: ('prompt/.*',); FT: ('model/.*',); both: ('.*',).
    trainable: tuple[str, ...] = ("prompt/.*",)
    prompt_length: int = 20  # P; 0 = no prompt (plain fine-tuning).
    # 'vocab' (sampled token embeddings), 'text:<words>' (their embeddings), 'file:<x.npy>'.
    prompt_init: str = "vocab"
    prompt_init_population: int | None = 5000  # 'vocab' samples the first rows only.
    optimizer: str = "adam"  # 'sgd', 'adam' or 'adafactor'.
    learning_rate: float = 0.3  # Peak; prompt tuning uses ~0.3, fine-tuning ~1e-4.
    warmup_steps: int = 0  # Linear warm-up, then constant.
    grad_clip: float = 0.0  # Clip by global norm; 0 = no clipping.
    num_steps: int = 1000
    checkpoint_every: int = 100  # Also at the end.
    keep_checkpoints: int = 2
    log_every: int = 10  # Console line and TensorBoard scalars.
    eval_every: int = 0  # Held-out evaluation; 0 = at the end only.
    model_parallel: int = 1  # Size of the mesh's `model` axis.
    seed: int = 0  # Prompt initialisation.


# ---------------------------------------------------------------------------
# Model, losses and optimizer.
# ---------------------------------------------------------------------------


def load_base_model(spec: evaluation.ModelSpec, mesh, rules) -> tuple[t5_config.T5Config, Any, Any]:
    """(config, params in their shardings, tokenizer) of the model to train from."""
    from jaxrobust.inference import tokenizer as tokenizer_lib

    if spec.family != "t5":
        raise NotImplementedError(f"model {spec.name!r}: training supports family 't5' only")
    if spec.tokenizer == "byte":
        tok = tokenizer_lib.ByteTokenizer()
    else:
        tok = tokenizer_lib.HFTokenizer(spec.tokenizer or spec.checkpoint)
    if spec.checkpoint:
        config = t5_config.from_hf_config(checkpoints.read_hf_config(spec.checkpoint))
        shardings = partitioning.logical_to_shardings(t5.param_logical_axes(config), mesh, rules)
        config, params = checkpoints.load_hf_t5(spec.checkpoint, shardings=shardings)
        return config, params, tok
    config = t5_config.get_preset(spec.preset or "tiny", vocab_size=tok.vocab_size)
    init = lambda rng: t5.T5(config).init(rng, *t5.dummy_inputs())  # noqa: E731
    params, _ = partitioning.init_sharded(init, jax.random.PRNGKey(spec.seed), mesh, rules)
    return config, params, tok


def prompt_initializer(options: TrainOptions, embedding: Array, tokenizer: Any):
    kind, _, arg = options.prompt_init.partition(":")
    if kind == "vocab":
        return prompts.from_sampled_vocab(embedding, options.prompt_init_population)
    if kind == "text":
        ids = tokenizer.encode(arg, add_eos=False)
        return prompts.from_text(embedding, ids, options.prompt_init_population)
    if kind == "file":
        return prompts.from_file(arg)
    raise ValueError(f"prompt_init {options.prompt_init!r}: expected 'vocab', 'text:..', 'file:..'")


def trainable_mask(params: Any, patterns: Sequence[str]) -> Any:
    """A tree of Python bools: does the parameter's '/'-joined path match a pattern?"""
    compiled = [re.compile(p) for p in patterns]
    flat = traverse_util.flatten_dict(params, sep="/")
    mask = {k: any(c.fullmatch(k) for c in compiled) for k in flat}
    if not any(mask.values()):
        raise ValueError(
            f"trainable patterns {list(patterns)} match no parameter of {list(flat)[:8]}..."
        )
    return traverse_util.unflatten_dict(mask, sep="/")


def make_optimizer(options: TrainOptions, mask: Any) -> optax.GradientTransformation:
    """Masked Optax chains (big_vision's recipe): the optimizer on trainable leaves,
    `set_to_zero` (no state) on frozen ones."""
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, options.learning_rate, max(options.warmup_steps, 1)),
            optax.constant_schedule(options.learning_rate),
        ],
        [options.warmup_steps],
    )
    if options.warmup_steps == 0:
        schedule = optax.constant_schedule(options.learning_rate)
    make = {
        "sgd": lambda: optax.sgd(schedule),
        "adam": lambda: optax.adam(schedule),
        "adafactor": lambda: optax.adafactor(schedule),
    }
    if options.optimizer not in make:
        raise ValueError(f"optimizer {options.optimizer!r}: expected one of {sorted(make)}")
    chain = [optax.clip_by_global_norm(options.grad_clip)] if options.grad_clip > 0 else []
    chain.append(make[options.optimizer]())
    labels = jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform(
        {"train": optax.chain(*chain), "frozen": optax.set_to_zero()}, labels
    )


def _pooled(
    config: t5_config.T5Config, model_params: Any, inputs: Array, prompt: Array | None
) -> Array:
    """Mean final encoder states over attended positions (prompt included): `[N, D]`."""
    encoded, mask = t5.T5(config).apply({"params": model_params}, inputs, prompt, method="encode")
    m = mask[..., None].astype(jnp.float32)
    return jnp.sum(encoded.astype(jnp.float32) * m, axis=1) / jnp.maximum(m.sum(1), 1.0)


def _target_log_probs(config: t5_config.T5Config, model_params: Any, flat: dict, prompt) -> Array:
    """Teacher-forced log-probabilities `[N, L, V]` of the one target per row."""
    model = t5.T5(config)
    targets = flat["targets"][:, 0]
    dec_in = layers.shift_right(targets, config.pad_id)
    logits = model.apply({"params": model_params}, flat["inputs"], dec_in, prompt)
    return jax.nn.log_softmax(logits, axis=-1)


def losses(
    config: t5_config.T5Config,
    params: Any,
    batch: dict[str, Array],
    opts: LossOptions,
    generation=False,
) -> tuple[Array, dict[str, Array]]:
    """The weighted loss and its terms for a paraphrase batch (see the module docstring).

    Args:
      params: `{'model': T5 params, 'prompt': {'prompt': [P, D]}}` ('prompt' optional).
      batch: from `ParaphraseBatches`; an optional `weight` `[B]` masks examples.
      generation: token-level CE and KL over the gold target (tasks without options).

    Returns:
      (total, metrics: loss, ce, kl, rep, accuracy, accuracy_original, entropy).
    """
    prompt = params["prompt"]["prompt"] if "prompt" in params else None
    b, r = batch["inputs"].shape[:2]
    flat = {
        k: batch[k].reshape((b * r,) + batch[k].shape[2:])
        for k in ("inputs", "targets", "target_mask")
    }
    weight = batch.get("weight", jnp.ones((b,), jnp.float32))
    wsum = jnp.maximum(weight.sum(), 1.0)
    rows_w = jnp.broadcast_to(weight[:, None], (b, r))
    if opts.ce_rows == "original":
        rows_w = rows_w * (jnp.arange(r) == 0)[None, :]
    elif opts.ce_rows != "all":
        raise ValueError(f"ce_rows {opts.ce_rows!r}: expected 'all' or 'original'")
    sg = jax.lax.stop_gradient if opts.stop_gradient_original else (lambda x: x)
    metrics: dict[str, Array] = {}

    if generation:
        lp = _target_log_probs(config, params["model"], flat, prompt)  # [B*R, L, V]
        lp = lp.reshape((b, r) + lp.shape[1:])
        tmask = batch["target_mask"][:, :, 0].astype(jnp.float32)  # [B, R, L]
        gold = jnp.take_along_axis(lp, batch["targets"][:, :, 0, :, None], axis=-1)[..., 0]
        row_nll = -(gold * tmask).sum(-1) / jnp.maximum(tmask.sum(-1), 1.0)
        ce = (row_nll * rows_w).sum() / jnp.maximum(rows_w.sum(), 1.0)
        p0 = jnp.exp(sg(lp[:, :1]))
        kl_tok = (p0 * (sg(lp[:, :1]) - lp[:, 1:])).sum(-1)  # [B, K, L]
        kl_row = (kl_tok * tmask[:, 1:]).sum(-1) / jnp.maximum(tmask[:, 1:].sum(-1), 1.0)
        correct = (lp.argmax(-1) == batch["targets"][:, :, 0]) | (tmask == 0)
        acc = correct.all(-1).astype(jnp.float32)  # [B, R]
        entropy = -(jnp.exp(lp) * lp).sum(-1).mean(-1)
    else:
        scores = inference.option_log_likelihoods(
            config, params["model"], flat, prompt, average=opts.average
        ).reshape(b, r, -1)
        present = batch["target_mask"].any(-1)  # [B, R, O]
        logp = jax.nn.log_softmax(jnp.where(present, scores, ABSENT), axis=-1)
        logp = jnp.where(present, logp, 0.0)
        gold = jnp.take_along_axis(logp, batch["answer"][:, None, None], axis=-1)[..., 0]
        ce = -(gold * rows_w).sum() / jnp.maximum(rows_w.sum(), 1.0)
        p0 = jnp.exp(sg(logp[:, :1])) * present[:, :1]
        kl_row = (p0 * (sg(logp[:, :1]) - logp[:, 1:])).sum(-1)  # [B, K]
        acc = jnp.argmax(jnp.where(present, logp, -jnp.inf), -1) == batch["answer"][:, None]
        acc = acc.astype(jnp.float32)
        entropy = -(jnp.exp(logp) * logp * present).sum(-1)  # [B, R]
        metrics["predictions"] = jnp.argmax(jnp.where(present, logp, -jnp.inf), -1)
    kl = (kl_row.mean(-1) * weight).sum() / wsum if r > 1 else jnp.zeros(())
    rep = jnp.zeros(())
    if opts.rep_weight and r > 1:
        pooled = _pooled(config, params["model"], flat["inputs"], prompt).reshape(b, r, -1)
        orig = sg(pooled[:, :1])
        cos = (orig * pooled[:, 1:]).sum(-1) / (
            jnp.linalg.norm(orig, axis=-1) * jnp.linalg.norm(pooled[:, 1:], axis=-1) + 1e-9
        )
        rep = ((1.0 - cos).mean(-1) * weight).sum() / wsum
    total = opts.ce_weight * ce + opts.kl_weight * kl + opts.rep_weight * rep
    metrics.update(
        loss=total,
        ce=ce,
        kl=kl,
        rep=rep,
        accuracy=(acc.mean(-1) * weight).sum() / wsum,
        accuracy_original=(acc[:, 0] * weight).sum() / wsum,
        accuracy_paraphrase=(
            (acc[:, 1:].mean(-1) * weight).sum() / wsum if r > 1 else acc[:, 0].mean()
        ),
        entropy=(entropy.mean(-1) * weight).sum() / wsum,
    )
    return total, metrics


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


def subset(tree: Any, mask: Any) -> dict:
    """The leaves of `tree` where `mask` is True, as a nested dict (for checkpoints)."""
    flat = traverse_util.flatten_dict(tree)
    keep = traverse_util.flatten_dict(mask)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if keep[k]})


def merge(tree: Any, part: dict) -> Any:
    """`tree` with the leaves of `part` (from `subset`) put back."""
    flat = traverse_util.flatten_dict(tree)
    flat.update(traverse_util.flatten_dict(part))
    return traverse_util.unflatten_dict(flat)


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
# The program.
# ---------------------------------------------------------------------------


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
    import orbax.checkpoint as ocp
    from tensorboardX import SummaryWriter

    work = pathlib.Path(workdir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    for module in task_modules:
        importlib.import_module(module)

    # ----------------------------------------------------------------- mesh
    mesh = partitioning.make_mesh(data=-1, model=options.model_parallel)
    rules = partitioning.standard_logical_axis_rules()

    # ----------------------------------------------------------------- data
    split = split_templates(data)
    recorded = {**dataclasses.asdict(split), "data_options": dataclasses.asdict(data)}
    split_file = work / "template_split.json"
    if split_file.exists() and json.loads(split_file.read_text()) != json.loads(
        json.dumps(recorded)
    ):
        raise ValueError(
            f"{split_file} records another template split or data options; use a new workdir"
        )
    if jax.process_index() == 0:  # One writer, atomic: no process reads half a file.
        tmp = split_file.with_name(split_file.name + ".tmp")
        tmp.write_text(json.dumps(recorded, indent=2))
        tmp.replace(split_file)
    config, base_params, tokenizer = load_base_model(model, mesh, rules)
    train_ids = split.original + split.paraphrase
    encoded = encode_examples(split, train_ids, tokenizer, data, data.split, data.limit)
    batches = ParaphraseBatches(encoded, len(split.original), data, config.pad_id)
    if data.batch_size % mesh.shape[partitioning.DATA]:
        raise ValueError(f"batch_size={data.batch_size} must divide over {mesh.shape} data axis")
    held = encode_examples(
        split,
        split.original + split.held_out,
        tokenizer,
        data,
        data.eval_split or data.split,
        data.eval_limit,
    )
    eval_batches = heldout_batches(held, len(split.original), data.batch_size, config.pad_id)

    # ----------------------------------------------------- model and optimizer
    params: dict[str, Any] = {"model": base_params}
    if options.prompt_length:
        init = prompt_initializer(options, base_params["token_embedder"]["embedding"], tokenizer)
        module = prompts.Prompt(options.prompt_length, config.emb_dim, init)
        params["prompt"], _ = partitioning.init_sharded(
            module.init, jax.random.PRNGKey(options.seed), mesh, rules
        )
    mask = trainable_mask(params, options.trainable)
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
    manager = ocp.CheckpointManager(
        work / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=options.keep_checkpoints, create=True),
    )

    def saved_tree(st):
        return {
            "step": st["step"],
            "trainable": subset(st["params"], mask),
            "opt_state": st["opt_state"],
        }

    if manager.latest_step() is not None:
        at = manager.latest_step()
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, saved_tree(state))
        restored = manager.restore(
            at,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        r = restored["state"]
        state = {
            "step": r["step"],
            "params": merge(state["params"], r["trainable"]),
            "opt_state": r["opt_state"],
        }
        log.warning("resumed from %s at step %d", work / "checkpoints", at)
        print(f"resumed at step {at}", flush=True)

    def save(st, step):
        position = {
            "step": step,
            "examples_seen": step * data.batch_size,
            "epoch_size": batches.num_examples,
        }
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(saved_tree(st)), data=ocp.args.JsonSave(position)
            ),
        )
        manager.wait_until_finished()
        print(f"checkpoint saved step={step}", flush=True)

    # --------------------------------------------------------------- evals
    writer = SummaryWriter(str(work / "tb")) if jax.process_index() == 0 else None

    def run_evals(st, step) -> dict:
        heldout = evaluate_heldout(config, st["params"], eval_batches, loss, mesh, rules)
        if writer:
            for k, v in heldout.items():
                writer.add_scalar(f"heldout/{k}", v, step)
        print(
            f"step {step:>6} heldout | kl {heldout['kl']:.4f} "
            f"acc {heldout['accuracy_paraphrase']:.3f} "
            f"(original {heldout['accuracy_original']:.3f}) entropy {heldout['entropy']:.3f}",
            flush=True,
        )
        return heldout

    # ---------------------------------------------------------------- loop
    step = int(state["step"])
    metrics: dict[str, float] = {}
    start, start_step = time.monotonic(), step
    if gin_config and writer:
        writer.add_text("gin_config", gin_config, step)
    while step < options.num_steps:
        batch = {k: jax.device_put(v, batch_shardings[k]) for k, v in batches.batch(step).items()}
        state, m = train_step(state, batch)
        step += 1
        if step % options.log_every == 0 or step == options.num_steps:
            metrics = {k: float(v) for k, v in jax.device_get(m).items()}
            rate = (step - start_step) / max(time.monotonic() - start, 1e-9)
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(f"train/{k}", v, step)
            print(
                f"step {step:>6}/{options.num_steps} | loss {metrics['loss']:.4f} "
                f"ce {metrics['ce']:.4f} kl {metrics['kl']:.4f} rep {metrics['rep']:.4f} | "
                f"acc {metrics['accuracy']:.3f} | {rate:.1f} steps/s",
                flush=True,
            )
        if options.eval_every and step % options.eval_every == 0 and step < options.num_steps:
            run_evals(state, step)
        if step % options.checkpoint_every == 0 or step == options.num_steps:
            save(state, step)
    heldout = run_evals(state, step)
    manager.close()
    if writer:
        writer.close()

    # ------------------------------------------------------------- outputs
    final = state["params"]
    if jax.process_index() == 0:
        if "prompt" in final:
            prompts.save_prompt(work / "prompt.npy", final["prompt"]["prompt"])
        if any(jax.tree.leaves(mask["model"])):
            checkpoints.export_hf_t5(final["model"], config, work / "hf_model")
        (work / "metrics.json").write_text(
            json.dumps({"step": step, "train": metrics, "heldout": heldout}, indent=2)
        )
    return {"params": final, "metrics": metrics, "heldout": heldout, "split": split, "step": step}


def trained_model_spec(base: evaluation.ModelSpec, workdir: str, name: str) -> evaluation.ModelSpec:
    """The `ModelSpec` that evaluates a training run's result: its prompt and/or model."""
    work = pathlib.Path(workdir).absolute()
    changes: dict[str, Any] = {"name": name}
    if (work / "prompt.npy").exists():
        changes["soft_prompt"] = str(work / "prompt.npy")
    if (work / "hf_model").is_dir():
        changes["checkpoint"] = str(work / "hf_model")
        changes["tokenizer"] = base.tokenizer or base.checkpoint
    return dataclasses.replace(base, **changes)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run `python -m jaxrobust.main train_prompt --gin_file=...`")
