"""The model factory: a `ModelSpec` in, a model on the mesh out.

`load_model(spec, mesh)` is the one place a model is built, for evaluation,
training, the `score` command and the benchmark alike:

1. the family: `families.get_family(spec.family)`;
2. the tokenizer (`make_tokenizer`): 'byte', an HF directory, or the checkpoint's;
3. the config: the checkpoint's `config.json`, else the preset with the
   tokenizer's vocabulary size;
4. the rules: the standard logical axis rules, with every axis the mesh does not
   divide replicated (`partitioning.fit_rules_to_dims`: a 32001-row vocabulary,
   the byte tokenizer's 259 rows);
5. the parameters, created in their shardings: read tensor by tensor from the
   HF checkpoint (`Family.load_hf`), or initialised from `spec.seed` by the
   jitted init (`partitioning.init_sharded`), then cast to `spec.dtype`.

Before any weight is read, the tokenizer's ids are checked against the model's
vocabulary: an id at or past the embedding's last row would score NaN
silently. More rows than ids is fine (T5 checkpoints have 32128 rows for a
32100-token vocabulary).

`LoadedModel.weights_digest` identifies the weights by content:
- from a checkpoint, `checkpoints.WeightsDigest` over the tensors as they were
  read (`'sha256:...'`; the same weights give the same digest in any file
  layout; costs one SHA-256 pass over the bytes: a 0.99 GB checkpoint loaded in
  1.7 s instead of 1.2 s from the page cache, 2-core CPU);
- with random weights, a digest of what determines them: family, config, seed
  and dtype (`'init-sha256:...'`). Hashing the initialised parameters instead
  would copy every shard to one host (impossible for a model sharded over
  hosts) for no more information: the jitted init is a pure function of these.

The jitted random init gives the same bits as calling `Module.init` eagerly
(threefry draws do not depend on jit or sharding), so evaluation and training
start from the same weights for the same seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp

from jaxrobust import checkpoints
from jaxrobust.inference import families, prompt_formats
from jaxrobust.inference import tokenizer as tokenizer_lib
from jaxrobust.inference.engine import Engine
from jaxrobust.parallel import partitioning
from jaxrobust.storage import records


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate or to train from; gin binds one per `gin_configs/models/*.gin`
    (as `evaluation.ModelSpec`)."""

    name: str  # Label in paths, records and report rows, e.g. 'flan-t5-xl'.
    family: str = "t5"  # Architecture: a `families` name ('t5', 'llama', or registered).
    preset: str = ""  # Preset (models/t5_config.py, llama_config.py); random-weight shapes.
    checkpoint: str = ""  # HF directory; '' = random weights of `preset` (tests, demos).
    tokenizer: str = ""  # '' = the checkpoint's; 'byte' = ByteTokenizer; else an HF dir.
    prompt_format: str = "none"  # prompt_formats name wrapping each input (LLaMA family).
    series: str = ""  # Size-curve grouping, e.g. 'flan-t5'; '' = no curve.
    params_b: float = 0.0  # Parameters in billions (x axis of the size curve).
    # Collections whose observed:<c> templates it was tuned on; "*" = any, () = none.
    observed_collections: tuple[str, ...] = ("*",)
    soft_prompt: str = ""  # .npy file of learned prefix embeddings [P, D]; '' = none.
    seed: int = 0  # Random-weight init seed (no checkpoint).
    dtype: str = "float32"  # Parameter dtype on device ('float32' or 'bfloat16').

    def __post_init__(self):
        # The name becomes a folder: refused here, before a run writes anything.
        records.model_dirname(self.name)


def make_tokenizer(spec: ModelSpec) -> Any:
    """The spec's tokenizer: 'byte', else the HF directory `tokenizer` or `checkpoint`."""
    if spec.tokenizer == "byte":
        return tokenizer_lib.ByteTokenizer()
    directory = spec.tokenizer or spec.checkpoint
    if not directory:
        raise ValueError(
            f"model {spec.name!r}: random weights need ModelSpec.tokenizer ('byte' or an "
            "HF tokenizer directory)"
        )
    return tokenizer_lib.HFTokenizer(directory)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model on a mesh: what `load_model` returns."""

    spec: ModelSpec
    family: families.Family
    config: Any  # The family's config (`family.config_class`).
    params: Any  # The parameter tree, every leaf in its sharding.
    tokenizer: Any
    mesh: jax.sharding.Mesh
    rules: tuple  # Logical axis rules fitted to the model's sizes.
    # The weights' identity by content (see the module docstring): 'sha256:<hex>' of the
    # checkpoint's tensors, or 'init-sha256:<hex>' of family, config, seed and dtype.
    weights_digest: str

    def adapter(self) -> Any:
        """The family's engine adapter, with the spec's prompt format."""
        fmt = prompt_formats.get_format(self.spec.prompt_format)
        return self.family.make_adapter(self.config, self.tokenizer, fmt)

    def engine(self, **engine_options: Any) -> Engine:
        """An `Engine` on this model, mesh and rules, in the spec's prompt format.

        Args:
          engine_options: `Engine` keywords (`batch_size`, `max_input_len`, buckets, ...).
        """
        return Engine(
            self.config,
            self.params,
            self.tokenizer,
            mesh=self.mesh,
            rules=self.rules,
            prompt_format=self.spec.prompt_format,
            **engine_options,
        )


def load_model(
    spec: ModelSpec,
    mesh: jax.sharding.Mesh,
    rules: partitioning.LogicalRules | None = None,
    *,
    tokenizer: Any = None,
    config_overrides: dict[str, Any] | None = None,
) -> LoadedModel:
    """Builds the model `spec` names on `mesh` (see the module docstring).

    Args:
      rules: logical axis rules; defaults to `partitioning.standard_logical_axis_rules()`.
      tokenizer: use this tokenizer instead of the spec's (e.g. the benchmark's
        ids-as-text tokenizer); with random weights and no `vocab_size`
        attribute the preset keeps its own vocabulary size.
      config_overrides: config fields to replace, e.g. `{'dtype': 'bfloat16'}`
        for bfloat16 activations (parameters follow `spec.dtype`).
    """
    family = families.get_family(spec.family)
    if spec.checkpoint and (family.load_hf is None or family.from_hf_config is None):
        raise ValueError(
            f"model {spec.name!r}: family {family.name!r} reads no HF checkpoints "
            f"(ModelSpec.checkpoint={spec.checkpoint!r}); leave it '' for random weights"
        )
    tok = tokenizer if tokenizer is not None else make_tokenizer(spec)
    overrides = dict(config_overrides or {})
    if spec.checkpoint:
        config = checkpoints.config_from_hf(spec.checkpoint, family.from_hf_config, **overrides)
    else:
        if getattr(tok, "vocab_size", None) is not None:
            overrides = {"vocab_size": tok.vocab_size, **overrides}
        config = family.get_preset(spec.preset or "tiny", **overrides)
    _check_vocabulary(spec, family.logical_dims(config), tok)
    base = rules if rules is not None else partitioning.standard_logical_axis_rules()
    rules = partitioning.fit_rules_to_dims(base, mesh, family.logical_dims(config))
    dtype = jnp.dtype(spec.dtype)
    if spec.checkpoint:
        shardings = partitioning.logical_to_shardings(
            family.param_logical_axes(config), mesh, rules
        )
        digest = checkpoints.WeightsDigest()
        config, params = family.load_hf(
            spec.checkpoint, shardings=shardings, dtype=dtype, config=config, digest=digest
        )
        weights_digest = digest.hexdigest()
    else:
        init = family.init(config)
        params, shardings = partitioning.init_sharded(
            init, jax.random.PRNGKey(spec.seed), mesh, rules
        )
        if dtype != jnp.float32:
            cast = lambda tree: jax.tree.map(lambda x: x.astype(dtype), tree)  # noqa: E731
            params = partitioning.partition(cast, mesh, rules, out_shardings=shardings)(params)
        weights_digest = init_digest(family, config, spec.seed, dtype)
    return LoadedModel(spec, family, config, params, tok, mesh, rules, weights_digest)


def init_digest(family: families.Family, config: Any, seed: int, dtype: Any) -> str:
    """`'init-sha256:<hex>'` of what random weights are a function of."""
    recipe = {
        "family": family.name,
        "config_class": type(config).__name__,
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config),
        "seed": seed,
        "dtype": jnp.dtype(dtype).name,
    }
    text = json.dumps(recipe, sort_keys=True, default=str)
    return "init-sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _check_vocabulary(spec: ModelSpec, dims: dict, tok: Any) -> None:
    """Refuses a tokenizer whose ids reach past the model's embedding rows."""
    rows = min(dims["vocab"]) if dims.get("vocab") else None
    ids = tokenizer_lib.id_limit(tok)
    if rows is None or ids is None or ids <= rows:
        return
    if spec.checkpoint:
        source = f"checkpoint {spec.checkpoint}"
        fix = "use the checkpoint's own tokenizer (ModelSpec.tokenizer='') or one that fits"
    else:
        source = f"random-weight model (preset {spec.preset or 'tiny'!r})"
        fix = "leave the config's vocab_size to the tokenizer"
    tok_source = (
        "the byte tokenizer"
        if isinstance(tok, tokenizer_lib.ByteTokenizer)
        else f"tokenizer {getattr(tok, 'directory', None) or type(tok).__name__}"
    )
    raise checkpoints.CheckpointError(
        f"model {spec.name!r}: vocabulary mismatch: the {source} has {rows} embedding rows "
        f"but {tok_source} produces ids up to {ids - 1} ({ids} ids); ids {rows} and above "
        f"would score NaN: {fix}"
    )
