"""Training data for paraphrase-robust tuning: template roles and paraphrase batches.

A task `jr:<dataset>:<format>` has a bank of templates. `split_templates`
assigns them roles: originals are its observed templates (or the ids given);
held-out templates are never used in training (the ids given, or
`num_held_out` drawn by seed from the non-original ones); paraphrases are the
rest plus the originals other than a row's own. `encode_examples` renders and
tokenises every example under every template with the answer options in one
label order, and `ParaphraseBatches` cuts batches whose rows are one example
under an original and K paraphrases: batch `k` is a pure function of
(seed, k), so the data position of a run is its step. `jaxrobust.training`
consumes these.

Tokens and batch layouts are the model family's, through its engine adapter
(`inference.families`): an example is tokenised and truncated exactly as the
engine does when it scores it (`encode_rank`, `cut`; T5: input and options
apart, EOS included; LLaMA: BOS, prompt + option together), and rows are laid
out by the adapter's `rank_batch` (LLaMA adds a left-padded `input_mask`). A
too-long input loses words of its shortenable part only (the passage, or the
sentence around its entity mentions: `inference.batching.fit_input` on the
task's `input_parts`); one that does not fit even so is cut by the adapter's
rule and counted in a logged warning.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Which task, which templates, and how batches are cut."""

    task: str  # 'jr:<dataset>:<format>': every registered template of it forms the bank.
    split: str = "train"  # Split the training examples come from.
    limit: int | None = None  # First `limit` examples; None = all.
    render_seed: int = 0  # Seed of templates' random choices (tasks.examples).
    original_templates: tuple[str, ...] = ()  # Template ids; () = every observed:* template.
    held_out_templates: tuple[str, ...] = ()  # Never trained on; () = draw `num_held_out`.
    num_held_out: int = 1  # Held-out templates drawn (by `seed`) when none are named.
    num_paraphrases: int = 1  # K paraphrase rows per example per batch; 0 = originals only.
    batch_size: int = 8  # Examples per step (global); the batch has batch_size * (1+K) rows.
    max_input_len: int = 512  # Input tokens; longer inputs lose passage words (`fit_input`).
    eval_split: str = ""  # Split of the held-out evaluation; '' = `split`.
    eval_limit: int | None = 64  # Examples in the held-out evaluation.
    seed: int = 0  # Shuffling, template draws and the held-out choice.


@dataclasses.dataclass(frozen=True)
class TemplateSplit:
    """The templates of a task by role (template ids); recorded with every run."""

    task: str
    original: tuple[str, ...]
    paraphrase: tuple[str, ...]
    held_out: tuple[str, ...]
    task_names: dict[str, str]  # Template id -> registered task name.


def split_templates(data: DataOptions) -> TemplateSplit:
    """Assigns the task's templates to originals, paraphrases and held-out ones."""
    from jaxrobust.tasks import registry

    bank = {
        tpl.id: name
        for name, (_, tpl) in sorted(registry.REGISTERED.items())
        if name.startswith(data.task + ":")
    }
    if not bank:
        raise KeyError(f"no registered templates for task {data.task!r} (expected 'jr:<d>:<f>')")
    kinds = {tid: registry.REGISTERED[name][1].kind for tid, name in bank.items()}
    for given in (*data.original_templates, *data.held_out_templates):
        if given not in bank:
            raise KeyError(f"{data.task}: no template {given!r}; templates: {sorted(bank)}")
    original = data.original_templates or tuple(t for t in bank if kinds[t] == "observed")
    if not original:
        raise ValueError(f"{data.task}: no observed template; name DataOptions.original_templates")
    rest = [t for t in bank if t not in original]
    if data.held_out_templates:
        held = tuple(data.held_out_templates)
        if set(held) & set(original):
            raise ValueError(f"{data.task}: templates {set(held) & set(original)} are both.")
    else:
        rng = np.random.RandomState(data.seed)
        held = tuple(sorted(rng.choice(rest, min(data.num_held_out, len(rest)), replace=False)))
    paraphrase = tuple(t for t in rest if t not in held)
    return TemplateSplit(data.task, tuple(original), paraphrase, held, bank)


@dataclasses.dataclass
class Encoded:
    """Every example under every template, tokenised, options in one label order."""

    inputs: list[list[list[int]]]  # [template][example] -> input ids.
    options: list[list[list[list[int]]]]  # [template][example] -> option ids (label order).
    answer: np.ndarray  # [N] gold option index in label order.
    generation: bool  # No options: targets are the gold text (token-level losses).


def encode_examples(
    split: TemplateSplit,
    template_ids: Sequence[str],
    adapter: Any,
    data: DataOptions,
    data_split: str,
    limit: int | None,
    prompt_format: str = "none",
    targets_only: bool = False,
) -> Encoded:
    """Renders and tokenises the examples under each template, aligned by example id.

    Args:
      adapter: the model family's engine adapter (`LoadedModel.adapter()`).
      prompt_format: the `prompt_formats` name wrapped around every input, as the
        engine does (`ModelSpec.prompt_format`).
      targets_only: encode each example's gold target text only, even where the task
        has answer options (`LossOptions.objective='target'`): a generation encoding.
    """
    import jaxrobust.tasks as tasks
    from jaxrobust.evaluation.examples import model_input
    from jaxrobust.inference import batching, prompt_formats
    from jaxrobust.tasks import registry

    fmt = prompt_formats.get_format(prompt_format)

    per_template = []
    for tid in template_ids:
        spec, template = tasks.lookup(split.task_names[tid])
        exs = registry.examples(
            spec, template, data_split, limit=limit, seed=data.render_seed, parts=True
        )
        per_template.append({ex["example_id"]: ex for ex in exs})
    ids = [i for i in per_template[0] if all(i in t for t in per_template)]
    if not ids:
        raise ValueError(f"{split.task}: no example id is common to templates {template_ids}")
    first = per_template[0]
    generation = targets_only or not first[ids[0]]["options"]
    keep = [i for i in ids if generation or first[i]["answer_index"] >= 0]
    if len(keep) < len(ids):
        log.warning(
            "%s: %d examples whose gold label is no option dropped",
            split.task,
            len(ids) - len(keep),
        )
    max_len = data.max_input_len
    cuts = {"truncated": 0, "protected_cut": 0}

    def count(text: str) -> int:
        return len(adapter.encode_prompt(text))

    def encode(ex: dict, targets: list[str]) -> tuple[list[int], list[list[int]]]:
        """As the engine scores it: (input ids fitted to `max_len`, target ids), EOS included."""
        fitted = batching.fit_input(model_input(ex), count, max_len, fmt.apply)
        ids, conts = adapter.encode_rank(fitted.text, targets, True)
        cut = fitted.protected_cut or len(ids) > max_len
        cuts["truncated"] += fitted.truncated or cut
        cuts["protected_cut"] += cut
        return (ids if len(ids) <= max_len else adapter.cut(ids, max_len)), conts

    inputs, options = [], []
    for tid, exs in zip(template_ids, per_template, strict=True):
        row_inputs, rows = [], []
        for i in keep:
            ex = exs[i]
            if generation:
                ids, conts = encode(ex, [ex["targets"]])
            else:
                labels = list(first[i]["option_labels"])
                if sorted(ex["option_labels"]) != sorted(labels):
                    raise ValueError(
                        f"{split.task}: template {tid!r} gives example {i!r} option labels "
                        f"{ex['option_labels']}, template {template_ids[0]!r} gives {labels}; "
                        "the KL needs the same answer options under every template"
                    )
                by_label = dict(zip(ex["option_labels"], ex["options"], strict=True))
                ids, conts = encode(ex, [by_label[lab] for lab in labels])
            row_inputs.append(ids)
            rows.append(conts)
        inputs.append(row_inputs)
        options.append(rows)
    if cuts["truncated"]:
        log.warning(
            "%s: %d of %d inputs shortened to %d tokens; %d of them did not fit with the "
            "passage shortened and lost protected text (instruction, options or cue)",
            split.task,
            cuts["truncated"],
            len(keep) * len(template_ids),
            max_len,
            cuts["protected_cut"],
        )
    answer = np.array(
        [0 if generation else first[i]["option_labels"].index(first[i]["label"]) for i in keep],
        np.int32,
    )
    return Encoded(inputs, options, answer, generation)


class ParaphraseBatches:
    """Batch `k` is a pure function of (seed, k): the data position is the step.

    Each batch takes `batch_size` examples from a per-epoch permutation; row 0 of
    an example is one original template, rows 1..K distinct other training
    templates. Shapes are fixed for the run (one compilation).

    Arrays: the adapter's `rank_batch` arrays with two leading axes `[B, R, ...]`
    (`inputs` `[B, R, S]`, `targets`/`target_mask` `[B, R, O, L]`; LLaMA also
    `input_mask` `[B, R, S]`), and `answer` `[B]`, with R = 1 + K.
    """

    def __init__(self, encoded: Encoded, n_original: int, data: DataOptions, adapter: Any):
        self.enc, self.n_original, self.data, self.adapter = encoded, n_original, data, adapter
        self.num_templates = len(encoded.inputs)
        self.num_examples = len(encoded.answer)
        longest = max(len(x) for t in encoded.inputs for x in t)
        self.s = -(-longest // 8) * 8
        self.o = max(len(opts) for t in encoded.options for opts in t)
        self.length = max(len(o) for t in encoded.options for opts in t for o in opts)
        self.rows = 1 + data.num_paraphrases
        if data.num_paraphrases and self.num_templates < 2:
            raise ValueError("paraphrase rows need at least two training templates")

    def example_order(self, step: int) -> np.ndarray:
        b, n = self.data.batch_size, self.num_examples
        first = step * b
        out = []
        while len(out) < b:
            epoch, offset = divmod(first + len(out), n)
            perm = np.random.default_rng([self.data.seed, epoch]).permutation(n)
            out.extend(perm[offset : offset + b - len(out)].tolist())
        return np.array(out)

    def templates_for(self, step: int) -> np.ndarray:
        """`[B, R]` template indices: an original, then K distinct others."""
        rng = np.random.default_rng([self.data.seed, step, 1])
        out = np.zeros((self.data.batch_size, self.rows), np.int64)
        for b in range(self.data.batch_size):
            orig = rng.integers(self.n_original)
            others = [t for t in range(self.num_templates) if t != orig]
            k = self.rows - 1
            out[b, 0] = orig
            out[b, 1:] = rng.choice(others, k, replace=k > len(others))
        return out

    def assemble(self, examples: np.ndarray, templates: np.ndarray) -> dict[str, np.ndarray]:
        b, r = templates.shape
        pairs = [(t, ex) for ex, row in zip(examples, templates, strict=True) for t in row]
        flat = self.adapter.rank_batch(
            [self.enc.inputs[t][ex] for t, ex in pairs],
            [self.enc.options[t][ex] for t, ex in pairs],
            self.s,
            self.o,
            self.length,
            b * r,
        )
        batch = {k: v.reshape((b, r) + v.shape[1:]) for k, v in flat.items()}
        batch["answer"] = self.enc.answer[examples].astype(np.int32)
        return batch

    def batch(self, step: int) -> dict[str, np.ndarray]:
        return self.assemble(self.example_order(step), self.templates_for(step))


def heldout_batches(
    encoded: Encoded, n_original: int, batch_size: int, adapter: Any
) -> list[dict[str, np.ndarray]]:
    """Each example under original `i % n_original` and under every held-out template.

    `encoded`'s templates are the originals followed by the held-out ones; the
    last batch repeats examples to fill it (its duplicates are weighted 0).
    """
    n = len(encoded.answer)
    h = len(encoded.inputs) - n_original
    data = DataOptions(task="", batch_size=batch_size, num_paraphrases=h)
    maker = ParaphraseBatches(encoded, n_original, data, adapter)
    out = []
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, lo + batch_size)
        weight = (idx < n).astype(np.float32)
        idx = np.where(idx < n, idx, idx % n)
        templates = np.array(
            [[i % n_original] + list(range(n_original, n_original + h)) for i in idx]
        )
        batch = maker.assemble(idx, templates)
        batch["weight"] = weight
        out.append(batch)
    return out
