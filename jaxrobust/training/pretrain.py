"""Span-corruption pretraining (T5's objective) of a model on plain text.

Raffel et al. (2020), section 3.1.4: a random 15% of a document's tokens, in
spans of mean length 3, are each replaced in the input by one sentinel
token, and the target lists the sentinels with the tokens they hid::

    input:   Ada Brask was <s0> in Ashford. <s1> based in Elmdale.</s>
    target:  <s0> born <s1> Apex Labs is</s>

`span_corrupt` is the numpy function (T5's `random_spans_noise_mask`: span
lengths drawn as a random partition of the noise and non-noise token counts);
`pretrain` the program: every parameter trains on the token-level
cross-entropy of the targets (`training.losses` with ``generation=True``, the
same scorer fine-tuning uses), with the trainer's optimizer, Orbax
checkpoints and resume. Batch `k` is a pure function of (seed, k): documents
come from a per-epoch permutation and each (epoch, document) gets its own
corruption, so a resumed run continues exactly.

Outputs under `workdir`: ``checkpoints/``, ``pretrain_settings.json``,
``hf_model/`` (the pretrained model as an HF directory of its family: the
checkpoint a user can start from) and ``metrics.json`` (written last).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import evaluation, inference
from jaxrobust.evaluation import guards
from jaxrobust.parallel import distributed, partitioning
from jaxrobust.storage import files
from jaxrobust.training import checkpointing
from jaxrobust.training.loss import losses
from jaxrobust.training.optimizer import make_optimizer, trainable_mask
from jaxrobust.training.options import LossOptions, TrainOptions


@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    """Span corruption and its schedule."""

    num_steps: int = 1000
    batch_size: int = 32  # Documents per step.
    learning_rate: float = 2e-3  # Peak (Adam).
    warmup_steps: int = 50
    decay: str = "cosine"  # 'constant', 'linear' or 'cosine' (training.optimizer).
    grad_clip: float = 1.0  # Global-norm clipping; 0 = none.
    max_len: int = 128  # Document tokens kept (the first max_len - 1, then EOS).
    noise_density: float = 0.15  # Share of tokens hidden.
    mean_span_length: float = 3.0  # Mean length of a hidden span.
    checkpoint_every: int = 500
    log_every: int = 100
    seed: int = 0  # Document order and corruption.


def span_corrupt(
    ids: Sequence[int],
    rng: np.random.Generator,
    sentinels: Sequence[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
) -> tuple[list[int], list[int]]:
    """(input ids, target ids) of one document's token ids (no EOS), both ending in EOS.

    Raises:
      ValueError: the document needs more spans than there are sentinels.
    """
    n = len(ids)
    num_noise = min(max(int(round(n * noise_density)), 1), n - 1) if n > 1 else 0
    if num_noise == 0:
        return [*ids, eos_id], [eos_id]
    num_spans = max(1, min(int(round(num_noise / mean_span_length)), num_noise, n - num_noise))
    if num_spans > len(sentinels):
        raise ValueError(
            f"a document of {n} tokens needs {num_spans} sentinels, the tokenizer has "
            f"{len(sentinels)}; shorten max_len or add sentinels"
        )

    def partition(total: int) -> np.ndarray:  # `num_spans` positive parts summing to total
        cuts = np.sort(rng.choice(np.arange(1, total), num_spans - 1, replace=False))
        return np.diff(np.concatenate([[0], cuts, [total]]))

    keep, hide = partition(n - num_noise), partition(num_noise)
    inputs, targets, at = [], [], 0
    for i, (k, h) in enumerate(zip(keep, hide, strict=True)):
        inputs += [*ids[at : at + k], sentinels[i]]
        targets += [sentinels[i], *ids[at + k : at + k + h]]
        at += k + h
    return inputs + [eos_id], targets + [eos_id]


class SpanBatches:
    """Batch `k`: `batch_size` documents of a per-epoch permutation, each corrupted with a
    generator seeded by (seed, epoch, document); arrays `[B, 1, ...]` in the family's rank
    layout with one option (the target), so `training.losses` scores it."""

    def __init__(self, docs: list[list[int]], adapter: Any, opts: PretrainOptions, sentinels):
        self.docs, self.adapter, self.opts, self.sentinels = docs, adapter, opts, sentinels
        self.eos = adapter.tokenizer.eos_id
        longest = max(len(d) for d in docs)
        self.s = -(-(longest + 1) // 8) * 8
        noise = int(round(longest * opts.noise_density)) + 1
        self.length = -(-(2 * noise + 1) // 8) * 8

    def example(self, epoch: int, index: int) -> tuple[list[int], list[int]]:
        rng = np.random.default_rng([self.opts.seed, epoch, index, 7])
        o = self.opts
        return span_corrupt(
            self.docs[index], rng, self.sentinels, self.eos, o.noise_density, o.mean_span_length
        )

    def batch(self, step: int) -> dict[str, np.ndarray]:
        b, n = self.opts.batch_size, len(self.docs)
        pairs = []
        for j in range(step * b, step * b + b):
            epoch, offset = divmod(j, n)
            perm = np.random.default_rng([self.opts.seed, epoch]).permutation(n)
            pairs.append(self.example(epoch, int(perm[offset])))
        flat = self.adapter.rank_batch(
            [x for x, _ in pairs], [[y] for _, y in pairs], self.s, 1, self.length, b
        )
        out = {k: v.reshape((b, 1) + v.shape[1:]) for k, v in flat.items()}
        out["answer"] = np.zeros((b,), np.int32)
        return out


def pretrain(
    model: evaluation.ModelSpec,
    workdir: str | pathlib.Path,
    texts: Sequence[str],
    sentinels: Sequence[int],
    options: PretrainOptions = PretrainOptions(),
) -> dict[str, Any]:
    """Pretrains every parameter of `model` by span corruption on `texts`; resumes.

    Args:
      model: the base model (random weights from its preset, or a checkpoint).
      texts: the documents.
      sentinels: token ids of the sentinels (`<extra_id_0>`, ...), in order.

    Returns:
      The contents of ``metrics.json`` (final step, loss, and the share of targets predicted whole).
    """
    work = files.path(workdir)  # a gs:// workdir stays gs:// (storage.files)
    work.mkdir(parents=True, exist_ok=True)
    done = work / "metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    with guards.writer_lock(work, "pretrain"):
        opts = options
        # ------------------------------------------------------------- model
        mesh = partitioning.make_mesh(data=-1, model=1)
        base = inference.load_model(model, mesh)
        config, rules, family = base.config, base.rules, base.family
        adapter = base.adapter()
        settings = json.loads(
            json.dumps(
                {
                    "model": dataclasses.asdict(model),
                    "weights_digest": base.weights_digest,
                    "pretrain": dataclasses.asdict(opts),
                    "documents": len(texts),
                }
            )
        )
        settings_file = work / "pretrain_settings.json"
        if settings_file.exists() and json.loads(settings_file.read_text()) != settings:
            raise ValueError(
                f"{work} holds a pretraining run with other settings ({settings_file}); "
                "use a new folder"
            )
        if distributed.is_writer():
            files.write_json(settings_file, settings)

        # -------------------------------------------------------------- data
        keep = opts.max_len - 1
        docs = [adapter.encode_prompt(t)[:-1][:keep] for t in texts]
        batches = SpanBatches(docs, adapter, opts, list(sentinels))

        # --------------------------------------------------------- optimizer
        train_opts = TrainOptions(
            trainable=("model/.*",),
            prompt_length=0,
            optimizer="adam",
            learning_rate=opts.learning_rate,
            warmup_steps=opts.warmup_steps,
            decay=opts.decay,
            grad_clip=opts.grad_clip,
            num_steps=opts.num_steps,
        )
        params = {"model": base.params}
        mask = trainable_mask(params, train_opts.trainable)
        tx = make_optimizer(train_opts, mask)
        loss_opts = LossOptions()

        # ------------------------------------------------------- shard, step
        opt_state = partitioning.partition(tx.init, mesh, rules)(params)
        step0 = jax.device_put(jnp.zeros((), jnp.int32), partitioning.replicated(mesh))
        state = {"step": step0, "params": params, "opt_state": opt_state}
        state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
        batch_shardings = {
            k: partitioning.batch_sharding(mesh, v.ndim) for k, v in batches.batch(0).items()
        }

        def step_fn(st, batch):
            def loss_fn(p):
                return losses(config, p, batch, loss_opts, generation=True)

            (_, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(st["params"])
            updates, new_opt = tx.update(grads, st["opt_state"], st["params"])
            new = jax.tree_util.tree_map(lambda p, u: p + u.astype(p.dtype), st["params"], updates)
            out = {"loss": m["ce"], "exact_match": m["accuracy"]}
            return {"step": st["step"] + 1, "params": new, "opt_state": new_opt}, out

        train_step = partitioning.partition(
            step_fn,
            mesh,
            rules,
            in_shardings=(state_shardings, batch_shardings),
            out_shardings=(state_shardings, partitioning.replicated(mesh)),
            donate_argnums=(0,),
        )

        # ----------------------------------------------------- restore, loop
        ckpts = checkpointing.Checkpoints(work / "checkpoints", 2, mask)
        state = ckpts.restore_latest(state)
        step = int(state["step"])
        start, start_step, metrics = time.monotonic(), step, {}
        while step < opts.num_steps:
            batch = {
                k: jax.device_put(v, batch_shardings[k]) for k, v in batches.batch(step).items()
            }
            state, m = train_step(state, batch)
            step += 1
            if step % opts.log_every == 0 or step == opts.num_steps:
                metrics = {k: float(v) for k, v in jax.device_get(m).items()}
                elapsed = max(time.monotonic() - start, 1e-9)
                rate = (step - start_step) / elapsed
                eta = (opts.num_steps - step) / max(rate, 1e-9)
                print(
                    f"pretrain step {step:>6}/{opts.num_steps} | loss {metrics['loss']:.4f} "
                    f"exact {metrics['exact_match']:.3f} | {rate:.1f} steps/s, "
                    f"ETA {eta:.0f} s",
                    flush=True,
                )
            if step % opts.checkpoint_every == 0 or step == opts.num_steps:
                ckpts.save(state, step, {"step": step, "documents": len(docs)})
        ckpts.close()

        # ----------------------------------------------------------- outputs
        result = {"step": step, "train": metrics, "documents": len(docs)}
        if distributed.is_writer():
            family.export_hf(state["params"]["model"], config, work / "hf_model")
            files.write_atomic(done, json.dumps(result, indent=2))
        return result
