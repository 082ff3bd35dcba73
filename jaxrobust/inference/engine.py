"""The inference engine: batched, bucketed, sharded rank classification, generation, pooling.

The pure, jittable scorers live one module per model family (`inference.t5`,
`inference.llama`, `generation`); truncation and buckets in `inference.batching`.
`Engine` sorts examples by length, cuts fixed-size batches, pads every
dimension to a bucket (input length, option count, option length; short
batches get dummy rows) so an evaluation compiles a bounded set of programs,
runs jitted functions with explicit shardings (batch over `data`, weights over
`model`; a soft prompt is an argument, replicated), and returns results in
input order.

Scoring modes of `Engine.rank_classify`:
- `"standard"` (default): the teacher-forced log-likelihood of each option's
  tokens (EOS included for T5) given the input.
- `"sun"`: a reproduction of Sun et al. (2023, "Evaluating the Zero-shot
  Robustness of Instruction-tuned Language Models"; the rule of their
  `inference_modules.py` and `metrics.py`, jiudingsun01/InstructionEval). The
  full input (`InputParts` or a `Truncatable` rendered whole) is cut from the right at
  `sun_max_input_len` = 512 tokens, as their HF tokenizer call with
  `truncation=True` does (T5: the first 511 tokens and EOS; LLaMA: BOS and the
  first 511, which can cut the prompt format's answer cue). Each option is
  tokenised ALONE as their `tokenizer(label_space)` does: for T5 with the EOS
  the tokenizer appends, for LLaMA without the BOS they drop (and no EOS, which
  the LLaMA tokenizer does not add) (`adapter.sun_encode`). n = the shortest
  option's length, capped at their `max_new_tokens=32`; an option's score sums
  the log-probabilities of its first n tokens under the distributions of the
  *greedy* decode's first n steps. They multiply softmax probabilities; the
  log of that product is our sum, so the ranking is the same. One difference
  we do not copy: HF `generate` stops once every row of *their* batch has
  emitted EOS, and then fewer than n steps are read (their batches are not
  ours); we always read n steps.
- `"ni"`: QA4RE's decoding for HF models (OSU-NLP-Group/QA4RE
  `utils/hf_model_utils.py`, used by Ni et al. for the multiple-choice QA
  format): greedy decoding constrained to the options (in that format the
  option letters), each option tokenised alone without special tokens plus
  EOS, the allowed tokens at each step those continuing an option (a prefix
  trie), at most the longest option's length. The prediction is the option
  decoded, never `NO_MATCH`. Computed without a decoding loop: the
  log-likelihood of every trie prefix where the trie branches is scored
  teacher-forced (the 'standard' scorer) and the greedy walk down the trie
  compares those (`option_trie.constrained_greedy`); each step's distribution given the
  prefix is the one the constrained decode sees.
- `"ni_free"`: the free-generation variant: unconstrained greedy generation,
  then the prediction is the option whose normalised text equals the output
  (`generation.match_option(..., letters=False)`), else `generation.NO_MATCH`.

Ties (equal scores) go to the lowest option index (`np.argmax`).

Truncation in the other modes (`batching.fit_input`): an input given as
`InputParts` (what the tasks yield) loses words of its shortenable parts only;
one that cannot fit even then, and a plain string that is too long, is cut by
the adapter's rule and flagged `RankResult.protected_cut` (in mode 'sun' every
cut is flagged so: the paper's cut ignores the parts).

Multi-host: each process passes its own examples; the processes agree (one
all-gather) on the number of steps and each step's bucket shapes, and a
process that runs out of examples runs all-dummy batches, so every process
makes the same calls with the same shapes.

Model adapters come from the config's family (`inference.families.for_config`):
`inference.t5.T5Adapter`, and for decoder-only models
`inference.llama.LlamaAdapter` (prompt + option tokenised together, each prompt
shared by its options in one packed pass; its docstring says why). An adapter
supplies text -> ids (`encode_prompt`, `cut`, `encode_rank`), batch layouts
(`input_batch`, `rank_batch`), any mode-specific jittable function (`functions()`,
e.g. T5's and LLaMA's 'sun') and `generate_fn(n)`. The family gives the scorers every
model has ('standard', 'standard_mean' and 'pool', with or without a soft prompt,
`Engine._functions`) and the parameters' logical axes.

Prompt formats: `Engine(prompt_format=...)` wraps every input (the rendered
instruction) in a `prompt_formats` format before tokenising, e.g. Alpaca's
"### Instruction: ... ### Response:"; "none" (the default) leaves it as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxrobust.data.parts import InputParts
from jaxrobust.inference import batching, families, generation, option_trie, prompt_formats
from jaxrobust.inference.batching import (
    OPTION_COUNT_BUCKETS,
    OPTION_LEN_BUCKETS,
    Truncatable,
    bucket,
    fit_input,
    full_text,
    power_of_two_buckets,
)
from jaxrobust.inference.batching import (
    length_buckets as default_length_buckets,
)
from jaxrobust.parallel import distributed, partitioning


@dataclasses.dataclass
class RankResult:
    """One example's rank classification."""

    scores: np.ndarray  # [O] option scores (log-likelihoods; one-hot / zeros for "ni*").
    prediction: int  # Option index, or NO_MATCH (-1) for an unmatched generation.
    probs: np.ndarray  # [O] softmax of scores (one-hot / zeros for "ni*").
    truncated: bool  # The input was shortened to fit.
    generated: str | None = None  # The generated text ("ni" and "ni_free" modes).
    protected_cut: bool = False  # It did not fit even shortened: protected text may be cut.


# Sun et al.'s `generate(max_new_tokens=32)`: no option token past step 32 is read.
SUN_MAX_NEW_TOKENS = 32


# An input: its rendered text, or the text in parts (`InputParts`, `Truncatable`).
Input = str | InputParts | Truncatable


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - np.max(x))
    return e / e.sum()


# ---------------------------------------------------------------------------
# Engine.
# ---------------------------------------------------------------------------


def make_adapter(config: Any, tokenizer: Any, fmt: prompt_formats.PromptFormat) -> Any:
    """The model adapter of the config's family (`families.for_config`)."""
    return families.for_config(config).make_adapter(config, tokenizer, fmt)


class Engine:
    """Scores and generates for lists of rendered inputs; see the module docstring.

    Args:
      config: a registered family's config, e.g. `t5_config.T5Config` or
        `llama_config.LlamaConfig` (its type picks the family and the adapter).
      params: the parameter tree (host or device; placed into shardings here).
      tokenizer: `jaxrobust.inference.tokenizer` interface (`encode`, `decode`, ids).
      mesh: defaults to all devices, data-parallel (`make_mesh()`).
      rules: logical axis rules; defaults to the standard ones.
      batch_size: global rows per step (a multiple of the `data` axis size and
        of the process count); short batches are padded with dummy rows.
      max_input_len: encoder (T5) or prompt (LLaMA, BOS included) tokens; longer
        inputs lose shortenable words (`InputParts`); what still does not fit is
        cut (T5 keeps the start, LLaMA the end with the cue) and flagged.
      length_buckets / option_len_buckets / option_count_buckets: padded sizes
        (input lengths default to `batching.length_buckets(32, max_input_len)`;
        option counts and lengths: powers of two, with the midpoints above 8:
        SemEval's 19 relations pad to 24 options, not 32).
      sun_max_input_len: the Sun et al. mode's truncation length.
      ni_max_new_tokens: the Ni et al. mode's generation length; None uses the
        option-length bucket of the longest option.
      prompt_format: a `prompt_formats` name wrapped around every input (the
        model gin's default; "none" leaves inputs as they are).
    """

    def __init__(
        self,
        config: Any,
        params: Any,
        tokenizer: Any,
        mesh: jax.sharding.Mesh | None = None,
        rules: partitioning.LogicalRules | None = None,
        batch_size: int = 32,
        max_input_len: int = 512,
        length_buckets: Sequence[int] | None = None,
        option_len_buckets: Sequence[int] = OPTION_LEN_BUCKETS,
        option_count_buckets: Sequence[int] = OPTION_COUNT_BUCKETS,
        sun_max_input_len: int = 512,
        ni_max_new_tokens: int | None = None,
        prompt_format: str = "none",
    ):
        self.config = config
        self.family = families.for_config(config)
        self.prompt_format = prompt_formats.get_format(prompt_format)
        self.adapter = self.family.make_adapter(config, tokenizer, self.prompt_format)
        self.tokenizer = tokenizer
        self.mesh = mesh if mesh is not None else partitioning.make_mesh()
        rules = rules if rules is not None else partitioning.standard_logical_axis_rules()
        # Axes the mesh does not divide (a 32001-row vocabulary, the byte
        # tokenizer's 259) are replicated.
        self.rules = partitioning.fit_rules_to_dims(
            rules, self.mesh, self.family.logical_dims(config)
        )
        data = self.mesh.shape[partitioning.DATA]
        if batch_size % data or batch_size % jax.process_count():
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of the mesh's data axis ({data}) "
                f"and of the process count ({jax.process_count()})"
            )
        self.batch_size = batch_size
        self.local_batch = batch_size // jax.process_count()
        self.max_input_len = max_input_len
        self.length_buckets = tuple(length_buckets or default_length_buckets(32, max_input_len))
        self.option_len_buckets = tuple(option_len_buckets)
        self.option_count_buckets = tuple(option_count_buckets)
        self.sun_max_input_len = sun_max_input_len
        self.ni_max_new_tokens = ni_max_new_tokens
        self.param_shardings = partitioning.logical_to_shardings(
            self.family.param_logical_axes(config), self.mesh, self.rules
        )
        self.params = partitioning.shard_params(params, self.param_shardings)
        self.trace_counts: dict[str, int] = {}  # Traces (= compilations) per function.
        # Input tokens rank_classify has scored: "real" the examples' own, "padded"
        # what the compiled programs ran (bucketed lengths x rows, dummy rows in).
        self.input_tokens = {"real": 0, "padded": 0}
        self._fns: dict[Any, Callable] = {}

    # -- jitted functions -----------------------------------------------------

    def _jitted(self, name: str, fn: Callable, out_ndim: int, local: dict, prompted: bool):
        """`fn` jitted once per name (a name always gets the same batch keys).

        `fn(params, batch)`, or `fn(params, batch, prompt)` when `prompted`: the
        soft prompt is an argument (replicated), never a constant of the program.
        """
        if name not in self._fns:

            def counted(params, batch, *prompt):
                self.trace_counts[name] = self.trace_counts.get(name, 0) + 1
                return fn(params, batch, *prompt)

            batch_shardings = {
                k: partitioning.batch_sharding(self.mesh, v.ndim) for k, v in local.items()
            }
            prompt_sharding = (partitioning.replicated(self.mesh),) if prompted else ()
            self._fns[name] = partitioning.partition(
                counted,
                self.mesh,
                self.rules,
                in_shardings=(self.param_shardings, batch_shardings) + prompt_sharding,
                out_shardings=partitioning.batch_sharding(self.mesh, out_ndim),
            )
        return self._fns[name]

    def _run(self, name: str, fn: Callable, out_ndim: int, local: dict, prompt=None):
        """This process's rows of `fn` on its local batch (and the device `prompt`)."""
        extra = () if prompt is None else (prompt,)
        jitted = self._jitted(name, fn, out_ndim, local, prompt is not None)
        batch = {k: partitioning.put_global_batch(v, self.mesh) for k, v in local.items()}
        return distributed.local_rows(jitted(self.params, batch, *extra))

    # -- host-side preparation ------------------------------------------------

    def _count(self, text: str) -> int:
        return len(self.adapter.encode_prompt(text))

    def _fit(self, x: Input, max_len: int) -> batching.Fitted:
        return fit_input(x, self._count, max_len, self.prompt_format.apply)

    def render_input(self, x: Input, max_len: int) -> tuple[str, bool]:
        """The prompt text of one input (format applied) and whether it was shortened.

        `InputParts` / `Truncatable` lose shortenable words until the formatted
        prompt fits `max_len` tokens (`batching.fit_input`); a plain string is
        returned whole (see `encode_input`).
        """
        fitted = self._fit(x, max_len)
        return fitted.text, fitted.truncated

    def _encode(self, x: Input, max_len: int) -> tuple[list[int], bool, bool]:
        """(ids, truncated, protected_cut) of one input, as `encode_input` says."""
        fitted = self._fit(x, max_len)
        ids = self.adapter.encode_prompt(fitted.text)
        if len(ids) <= max_len:
            return ids, fitted.truncated, fitted.protected_cut
        return self.adapter.cut(ids, max_len), True, True

    def encode_input(self, x: Input, max_len: int) -> tuple[list[int], bool]:
        """Token ids of one input (prompt format applied) and whether it was truncated.

        `InputParts` lose shortenable words only. What is still too long (a plain
        string, or parts whose protected text alone exceeds `max_len`) is cut by
        the adapter and flagged (`_encode`): T5 keeps its first `max_len - 1`
        tokens and EOS (T5X/HF behaviour, which can cut an answer cue at the
        end); LLaMA keeps BOS and the last tokens.
        """
        return self._encode(x, max_len)[:2]

    def _plan(self, lengths: list[tuple[int, ...]], buckets: list[Sequence[int]]):
        """Orders examples by size and agrees per-step bucket shapes across hosts.

        Returns (order, steps): `order` the local example indices, longest first;
        `steps[k]` the bucketed shape tuple of step k (same on every process).
        """
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        n_local = -(-len(order) // self.local_batch)
        n_steps = int(distributed.agree_max(np.array([n_local]))[0])
        shapes = np.zeros((n_steps, len(buckets)), np.int64)
        for k in range(n_local):
            rows = [lengths[i] for i in order[k * self.local_batch : (k + 1) * self.local_batch]]
            shapes[k] = [bucket(max(r[d] for r in rows), buckets[d]) for d in range(len(buckets))]
        shapes = distributed.agree_max(shapes)
        # A step no process has examples for would be all zeros: use the smallest buckets.
        for k in range(n_steps):
            for d, bs in enumerate(buckets):
                shapes[k, d] = max(shapes[k, d], bs[0])
        return order, [tuple(int(v) for v in row) for row in shapes]

    # -- public API -----------------------------------------------------------

    def rank_classify(
        self,
        inputs: Sequence[Input],
        options: Sequence[Sequence[str]],
        mode: str = "standard",
        average: bool = False,
        prefix_embeddings: np.ndarray | None = None,
    ) -> list[RankResult]:
        """Scores every option of every input; results in input order.

        Args:
          inputs: rendered inputs (`InputParts`, or plain strings: nothing in them
            shortenable), this process's examples.
          options: per input, its answer options (counts may differ).
          mode: "standard", "sun", "ni" or "ni_free" (see the module docstring).
          average: "standard" only: mean per-token log-likelihood.
          prefix_embeddings: a soft prompt `[P, D]` (`models/prompts.py`) prefixed
            to every input ("standard" mode). It is an argument of the
            compiled functions: another prompt of the same shape compiles nothing.
        """
        if len(inputs) != len(options):
            raise ValueError(f"{len(inputs)} inputs but {len(options)} option lists")
        if mode == "ni":
            return self._rank_constrained(inputs, options)
        if mode == "ni_free":
            return self._rank_by_generation(inputs, options)
        if mode not in ("standard", "sun"):
            raise ValueError(
                f"unknown mode {mode!r}; expected 'standard', 'sun', 'ni' or 'ni_free'"
            )
        max_len = self.sun_max_input_len if mode == "sun" else self.max_input_len
        enc, opt_ids = [], []
        for i, (x, opts) in enumerate(zip(inputs, options, strict=True)):
            if not opts:
                raise ValueError(f"example {i}: empty option list")
            if mode == "sun":
                ids, conts, truncated = self._sun_encode(x, opts)
                cut = truncated  # The paper's cut ignores the parts.
            else:
                fitted = self._fit(x, max_len)
                ids, conts = self.adapter.encode_rank(fitted.text, opts, True)  # T5 scores EOS.
                truncated, cut = fitted.truncated, fitted.protected_cut
            if any(len(c) == 0 for c in conts):
                raise ValueError(f"example {i}: an option with no tokens ({list(opts)})")
            if len(ids) > max_len:
                ids, truncated, cut = self.adapter.cut(ids, max_len), True, True
            enc.append((ids, truncated, cut))
            opt_ids.append(conts)
        sizes = [
            (len(ids), len(opts), max(len(o) for o in opts))
            for (ids, _, _), opts in zip(enc, opt_ids, strict=True)
        ]
        length_buckets = (
            self.length_buckets if mode == "standard" else (power_of_two_buckets(32, max_len))
        )
        buckets = [length_buckets, self.option_count_buckets, self.option_len_buckets]
        order, steps = self._plan(sizes, buckets)
        name = "standard_mean" if (mode == "standard" and average) else mode
        fn, prompt = self._functions()[name], None
        if prefix_embeddings is not None:
            fn, prompt = self._prompted(name, prefix_embeddings)
            name += "+prompt"
        results: list[RankResult | None] = [None] * len(inputs)
        for k, (s, o, length) in enumerate(steps):
            idx = order[k * self.local_batch : (k + 1) * self.local_batch]
            local = self.adapter.rank_batch(
                [enc[i][0] for i in idx],
                [opt_ids[i] for i in idx],
                s,
                o,
                length,
                self.local_batch,
            )
            scores = self._run(name, fn, 2, local, prompt)
            self.input_tokens["real"] += sum(len(enc[i][0]) for i in idx)
            self.input_tokens["padded"] += s * self.local_batch
            for row, i in enumerate(idx):
                sc = np.asarray(scores[row, : len(options[i])], np.float64)
                results[i] = RankResult(
                    scores=sc,
                    prediction=int(np.argmax(sc)),  # Ties -> lowest index.
                    probs=_softmax(sc),
                    truncated=enc[i][1],
                    protected_cut=enc[i][2],
                )
        return results  # type: ignore[return-value]

    def _sun_encode(self, x: Input, opts: Sequence[str]):
        """(input ids, option ids cut to the n steps read, truncated) for mode 'sun'."""
        if not hasattr(self.adapter, "sun_encode"):
            raise NotImplementedError(
                f"mode 'sun' needs the adapter's sun_encode; the {self.family.name!r} "
                "family's adapter has none"
            )
        fmt = self.prompt_format
        text = fmt.apply(full_text(x))
        ids, conts, truncated = self.adapter.sun_encode(text, opts, self.sun_max_input_len)
        # Only the first n tokens are read (n: the shortest option, at most 32 steps).
        n = min(min(len(c) for c in conts), SUN_MAX_NEW_TOKENS)
        return ids, [c[:n] for c in conts], truncated

    def _functions(self) -> dict[str, Callable]:
        """Jittable `(params, batch)` functions by mode: the family's scorers, plus the
        adapter's mode-specific ones (e.g. 'sun')."""
        cfg, fam = self.config, self.family
        return {
            "standard": lambda p, b: fam.option_log_likelihoods(cfg, p, b),
            "standard_mean": lambda p, b: fam.option_log_likelihoods(cfg, p, b, average=True),
            "pool": lambda p, b: fam.pooled_states(cfg, p, b),
            **self.adapter.functions(),
        }

    def _prompted_functions(self) -> dict[str, Callable]:
        """The family's scorers taking a soft prompt `[P, D]` as a third (traced) argument."""
        cfg, fam = self.config, self.family
        return {
            "standard": lambda p, b, prompt: fam.option_log_likelihoods(cfg, p, b, prompt),
            "standard_mean": lambda p, b, prompt: fam.option_log_likelihoods(
                cfg, p, b, prompt, average=True
            ),
        }

    def _prompted(self, name: str, prompt) -> tuple[Callable, jax.Array]:
        """(the adapter's `name` function taking a soft prompt, the prompt `[P, D]` on device)."""
        prompt = np.asarray(prompt, np.float32)
        fns = self._prompted_functions()
        if name not in fns:
            raise NotImplementedError(
                f"soft prompts are scored in 'standard' mode only (asked for {name!r}; "
                f"a prompt is taken in {sorted(fns)})"
            )
        if prompt.ndim != 2 or prompt.shape[1] != self.config.emb_dim:
            raise ValueError(
                f"soft prompt of shape {prompt.shape} does not fit this model: expected "
                f"[P, {self.config.emb_dim}] (the model's width emb_dim={self.config.emb_dim})"
            )
        return fns[name], partitioning.put_replicated(prompt, self.mesh)

    def _rank_by_generation(self, inputs, options) -> list[RankResult]:
        longest = max(len(self.tokenizer.encode(o)) for opts in options for o in opts)
        steps = self.ni_max_new_tokens or bucket(longest, self.option_len_buckets)
        texts, flags = self._generate(inputs, steps)
        out = []
        for text, (trunc, cut), opts in zip(texts, flags, options, strict=True):
            pred = generation.match_option(text, opts, letters=False)
            onehot = np.zeros(len(opts))
            if pred != generation.NO_MATCH:
                onehot[pred] = 1.0
            out.append(RankResult(onehot, pred, onehot.copy(), trunc, text, protected_cut=cut))
        return out

    def _rank_constrained(self, inputs, options) -> list[RankResult]:
        """Mode 'ni': greedy decoding constrained to the options (QA4RE's rule; see the
        module docstring), read off teacher-forced scores of the options' prefixes."""
        eos = self.tokenizer.eos_id
        enc = [self._encode(x, self.max_input_len) for x in inputs]
        seqs, asked = [], []
        for i, opts in enumerate(options):
            if not opts:
                raise ValueError(f"example {i}: empty option list")
            ids = [tuple(self.tokenizer.encode(o, add_eos=True)) for o in opts]
            if any(len(t) < 2 for t in ids):
                raise ValueError(f"example {i}: an option with no tokens ({list(opts)})")
            seqs.append(ids)
            asked.append(option_trie.contested_prefixes(ids))
        # Rows of at most the largest option-count bucket (an example with more
        # contested prefixes is scored over several rows with the same input).
        cap = self.option_count_buckets[-1]
        rows = [(i, a[k : k + cap]) for i, a in enumerate(asked) for k in range(0, len(a), cap)]
        scored = self._score_sequences([enc[i][0] for i, _ in rows], [c for _, c in rows])
        totals: list[dict] = [{} for _ in options]
        for (i, chunk), sc in zip(rows, scored, strict=True):
            totals[i].update(zip(chunk, sc, strict=True))
        out = []
        for i, opts in enumerate(options):
            pred = option_trie.constrained_greedy(seqs[i], totals[i], eos)
            onehot = np.zeros(len(opts))
            onehot[pred] = 1.0
            text = self.tokenizer.decode(list(seqs[i][pred]))
            out.append(
                RankResult(onehot, pred, onehot.copy(), enc[i][1], text, protected_cut=enc[i][2])
            )
        return out

    def _score_sequences(self, prompts: list[list[int]], conts: list[list[tuple]]):
        """Teacher-forced log-likelihoods of each prompt's continuations ('standard'
        scorer, continuations given as token ids), in input order."""
        sizes = [
            (len(p), len(c), max(len(t) for t in c)) for p, c in zip(prompts, conts, strict=True)
        ]
        buckets = [self.length_buckets, self.option_count_buckets, self.option_len_buckets]
        order, steps = self._plan(sizes, buckets)
        fn = self._functions()["standard"]
        out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        for k, (s, o, length) in enumerate(steps):
            idx = order[k * self.local_batch : (k + 1) * self.local_batch]
            local = self.adapter.rank_batch(
                [prompts[i] for i in idx],
                [[list(t) for t in conts[i]] for i in idx],
                s,
                o,
                length,
                self.local_batch,
            )
            scores = self._run("standard", fn, 2, local)
            for row, i in enumerate(idx):
                out[i] = np.asarray(scores[row, : len(conts[i])], np.float64)
        return out

    def _generate(self, inputs, max_new_tokens: int) -> tuple[list[str], list[tuple[bool, bool]]]:
        enc = [self._encode(x, self.max_input_len) for x in inputs]
        order, steps = self._plan([(len(e[0]),) for e in enc], [self.length_buckets])
        name = f"generate_{max_new_tokens}"
        fn = self.adapter.generate_fn(max_new_tokens)
        texts: list[str] = [""] * len(inputs)
        for k, (s,) in enumerate(steps):
            idx = order[k * self.local_batch : (k + 1) * self.local_batch]
            local = self.adapter.input_batch([enc[i][0] for i in idx], s, self.local_batch)
            tokens = self._run(name, fn, 2, local)
            for row, i in enumerate(idx):
                texts[i] = self.tokenizer.decode([int(t) for t in tokens[row]])
        return texts, [(e[1], e[2]) for e in enc]

    def generate(self, inputs: Sequence[Input], max_new_tokens: int) -> list[str]:
        """Greedy continuations (new text only, never the prompt; up to EOS), in input order."""
        return self._generate(inputs, max_new_tokens)[0]

    def generate_and_match(
        self,
        inputs: Sequence[Input],
        options: Sequence[Sequence[str]],
        max_new_tokens: int,
    ) -> list[tuple[str, int]]:
        """Generates, then maps each output to an option (letters allowed) or NO_MATCH."""
        texts = self.generate(inputs, max_new_tokens)
        return [(t, generation.match_option(t, o)) for t, o in zip(texts, options, strict=True)]

    def pooled_encoder_states(self, inputs: Sequence[Input], kind: str = "pool") -> np.ndarray:
        """`[N, D]` float32: each input's final encoder states averaged over its tokens
        (decoder-only models: the final normed states over the prompt's tokens).

        `kind` 'first_step' gives instead the adapter's first-generation-step state
        (T5: the decoder's final hidden state reading the start token, Sun et al.'s
        representation; `inference.t5.first_step_decoder_states`)."""
        fns = self._functions()
        if kind not in ("pool", "first_step") or kind not in fns:
            raise NotImplementedError(
                f"representation {kind!r}: the {self.family.name!r} family gives "
                f"{sorted(k for k in fns if k in ('pool', 'first_step'))}"
            )
        enc = [self.encode_input(x, self.max_input_len) for x in inputs]
        order, steps = self._plan([(len(ids),) for ids, _ in enc], [self.length_buckets])
        out = np.zeros((len(inputs), self.config.emb_dim), np.float32)
        fn = fns[kind]
        for k, (s,) in enumerate(steps):
            idx = order[k * self.local_batch : (k + 1) * self.local_batch]
            local = self.adapter.input_batch([enc[i][0] for i in idx], s, self.local_batch)
            pooled = self._run(kind, fn, 2, local)
            out[idx] = pooled[: len(idx)]
        return out
