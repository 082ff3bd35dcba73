"""The paraphrase-robustness loss (Sun et al. 2023) and its pieces.

For a batch whose rows are each example under its original instruction and
under K paraphrases (`training.data.ParaphraseBatches`, `[B, 1 + K, ...]`):

    loss = ce_weight * CE + kl_weight * KL(p_original || p_paraphrase)
           + rep_weight * (1 - cos(pooled_original, pooled_paraphrase))

CE is rank classification's cross-entropy over the answer options (softmax of
the options' log-likelihoods; over the gold target's tokens for a task without
options); p is the distribution over the answer options (per target token for
generation tasks) with the original side's gradient stopped unless configured
(`LossOptions.stop_gradient_original`); pooled are mean final states (T5's
encoder states, a decoder-only model's states over the prompt). The pieces are
the config's family's differentiable scorers (`inference.families.Family`:
`option_log_likelihoods`, `target_log_probs`, `pooled_states`), so every
registered family trains the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrobust.inference import families
from jaxrobust.training.options import LossOptions

Array = jax.Array
# Finite stand-in for an absent option's log-likelihood (-inf would make 0 * inf).
ABSENT = -1e9


def losses(
    config: Any,
    params: Any,
    batch: dict[str, Array],
    opts: LossOptions,
    generation: bool = False,
) -> tuple[Array, dict[str, Array]]:
    """The weighted loss and its terms for a paraphrase batch (see the module docstring).

    Args:
      config: a registered family's config (its type picks the scorers).
      params: `{'model': model params, 'prompt': {'prompt': [P, D]}}` ('prompt' optional).
      batch: from `ParaphraseBatches`: the family's rows `[B, R, ...]` ('inputs'
        `[B, R, S]`, 'targets' `[B, R, O, L]`, 'target_mask' `[B, R, O, L]`, ...),
        'answer' `[B]`; an optional 'weight' `[B]` masks examples. R = 1 + K rows,
        the original first.
      generation: token-level CE and KL over the gold target (tasks without options).

    Returns:
      (total, metrics: loss, ce, kl, rep, accuracy, accuracy_original,
      accuracy_paraphrase, entropy; with options also predictions `[B, R]`).
    """
    family = families.for_config(config)
    prompt = params["prompt"]["prompt"] if "prompt" in params else None
    b, r = batch["inputs"].shape[:2]
    flat = {
        k: v.reshape((b * r,) + v.shape[2:])
        for k, v in batch.items()
        if k not in ("answer", "weight")
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
        lp = family.target_log_probs(config, params["model"], flat, prompt)  # [B*R, L, V]
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
        scores = family.option_log_likelihoods(
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
        pooled = family.pooled_states(config, params["model"], flat, prompt).reshape(b, r, -1)
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
