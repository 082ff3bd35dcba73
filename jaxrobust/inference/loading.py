"""The model factory: a `ModelSpec` in, a model on the mesh out.

`load_model(spec, mesh)` is the one place a model is built, for evaluation,
training, the `score` command and the benchmark alike:

1. the family: `families.get_family(spec.family)`;
2. the tokenizer (`make_tokenizer`): 'byte', an HF directory, or the checkpoint's;
3. the config: an HF checkpoint's `config.json`; for a T5X checkpoint the preset
   (or a `config.json` given as the preset, or one beside the checkpoint) with the
   checkpoint's vocabulary size; with random weights the preset with the
   tokenizer's vocabulary size;
4. the rules: the standard logical axis rules, with every axis the mesh does not
   divide replicated (`partitioning.fit_rules_to_dims`: a 32001-row vocabulary,
   the byte tokenizer's 259 rows);
5. the parameters, created in their shardings: read tensor by tensor from the
   HF checkpoint (`Family.load_hf`) or the T5X one (`checkpoints.load_t5x`), or
   initialised from `spec.seed` by the jitted init (`partitioning.init_sharded`),
   then cast to `spec.dtype`.

Where checkpoints and tokenizers come from (`local_source`): a local path; an
object-store URL (`gs://...`, `memory://...`), copied whole into a local
temporary folder for the load (the disk needs room for it); or a Hugging Face
hub id (`google/flan-t5-xl`, any `org/name` that is not a local path), resolved
by `huggingface_hub.snapshot_download`: its cache (`HF_HUB_CACHE` / `HF_HOME`),
or a download where the network allows (`HF_HUB_OFFLINE=1`: the cache only).

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

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jaxrobust import checkpoints
from jaxrobust.inference import families, prompt_formats
from jaxrobust.inference import tokenizer as tokenizer_lib
from jaxrobust.inference.engine import Engine
from jaxrobust.parallel import partitioning
from jaxrobust.storage import files, records


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate or to train from; gin binds one per `gin_configs/models/*.gin`
    (as `evaluation.ModelSpec`)."""

    name: str  # Label in paths, records and report rows, e.g. 'flan-t5-xl'.
    family: str = "t5"  # Architecture: a `families` name ('t5', 'llama', or registered).
    # Preset (models/t5_config.py, llama_config.py), or an HF config.json path: the shapes
    # of random weights and of T5X checkpoints.
    preset: str = ""
    # HF directory, HF hub id ('google/flan-t5-xl') or T5X checkpoint (msgpack file or
    # tensorstore folder), local or gs://; '' = random weights of `preset` (tests, demos).
    checkpoint: str = ""
    tokenizer: str = ""  # '' = the checkpoint's; 'byte' = ByteTokenizer; else HF dir/hub id.
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


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# What a hub download fetches: config, weights (safetensors or .bin), tokenizer files.
HUB_FILES = ["*.json", "*.safetensors", "pytorch_model*.bin", "*.model", "*.txt"]


def hub_snapshot(repo_id: str) -> str:
    """The local folder of hub model `repo_id` (huggingface_hub's cache, or a download).

    Raises:
      CheckpointError: not cached and not downloadable (offline, unknown id), naming
        the cache folder.
    """
    import huggingface_hub
    from huggingface_hub import constants

    try:
        return huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_FILES)
    except Exception as e:  # noqa: BLE001 (offline, unknown repo, network: one message)
        raise checkpoints.CheckpointError(
            f"{repo_id}: no such local folder, and as a Hugging Face hub id it is neither in "
            f"the cache ({constants.HF_HUB_CACHE}) nor downloadable"
            f"{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}: "
            f"{type(e).__name__}: {e}"
        ) from None


@contextlib.contextmanager
def local_source(name: str) -> Iterator[str]:
    """A local path for a checkpoint or tokenizer `name` (see the module docstring):
    itself, a temporary copy of an object-store URL, or a hub snapshot; '' stays ''."""
    if not name or name == "byte":
        yield name
    elif not files.is_local(name):
        with tempfile.TemporaryDirectory(prefix="jaxrobust-") as scratch:
            src = files.path(name)
            if not src.exists():
                raise checkpoints.CheckpointError(f"{name}: no such file or folder")
            local = os.path.join(scratch, src.name)
            if src.is_dir():
                files.download_tree(src, local)
            else:
                with open(local, "wb") as f:
                    f.write(src.read_bytes())
            yield local
    elif os.path.exists(name) or not HUB_ID.fullmatch(name):
        yield name
    else:
        yield hub_snapshot(name)


def make_tokenizer(spec: ModelSpec, checkpoint: str | None = None) -> Any:
    """The spec's tokenizer: 'byte', else the HF directory (or hub id, or URL) `tokenizer`,
    else the checkpoint's (`checkpoint`: its local path, when the caller resolved it)."""
    if spec.tokenizer == "byte":
        return tokenizer_lib.ByteTokenizer()
    if not spec.tokenizer and not spec.checkpoint:
        raise ValueError(
            f"model {spec.name!r}: random weights need ModelSpec.tokenizer ('byte' or an "
            "HF tokenizer directory)"
        )
    if spec.tokenizer:
        with local_source(spec.tokenizer) as directory:
            tok = tokenizer_lib.HFTokenizer(directory)
        tok.directory = spec.tokenizer  # Messages name it as given (not a temporary copy).
        return tok
    with contextlib.ExitStack() as stack:
        local = checkpoint or stack.enter_context(local_source(spec.checkpoint))
        if checkpoints.is_t5x(local):
            raise ValueError(
                f"model {spec.name!r}: the T5X checkpoint {spec.checkpoint} holds no tokenizer; "
                "set ModelSpec.tokenizer ('byte', an HF tokenizer directory or a hub id such "
                "as 'google/flan-t5-xl')"
            )
        return tokenizer_lib.HFTokenizer(local)


def preset_config(spec: ModelSpec, family: families.Family, **overrides: Any) -> Any:
    """The config `spec.preset` names: a preset, or an HF `config.json` file."""
    if spec.preset.endswith(".json"):
        if family.from_hf_config is None:
            raise ValueError(f"model {spec.name!r}: family {family.name!r} reads no config.json")
        with local_source(spec.preset) as path:
            try:
                hf = json.loads(open(path).read())
                return family.from_hf_config(hf, **overrides)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise checkpoints.CheckpointError(
                    f"model {spec.name!r}: preset {spec.preset}: not an HF config.json of "
                    f"family {family.name!r}: {type(e).__name__}: {e}"
                ) from None
    return family.get_preset(spec.preset or "tiny", **overrides)


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
    with local_source(spec.checkpoint) as checkpoint:
        return _load_model(spec, checkpoint, mesh, rules, tokenizer, config_overrides)


def _load_model(spec, checkpoint, mesh, rules, tokenizer, config_overrides) -> LoadedModel:
    """`load_model` with the checkpoint at the local path `checkpoint`."""
    family = families.get_family(spec.family)
    t5x = bool(checkpoint) and checkpoints.is_t5x(checkpoint)
    if t5x and family.name != "t5":
        raise ValueError(
            f"model {spec.name!r}: {spec.checkpoint} is a T5X checkpoint; family "
            f"{family.name!r} reads HF checkpoints only (T5X checkpoints are T5's: family 't5')"
        )
    if checkpoint and not t5x and (family.load_hf is None or family.from_hf_config is None):
        raise ValueError(
            f"model {spec.name!r}: family {family.name!r} reads no HF checkpoints "
            f"(ModelSpec.checkpoint={spec.checkpoint!r}); leave it '' for random weights"
        )
    tok = tokenizer if tokenizer is not None else make_tokenizer(spec, checkpoint)
    overrides = dict(config_overrides or {})
    if t5x:
        given = preset_config(spec, family, **overrides) if spec.preset else None
        config = checkpoints.t5x_config(checkpoint, given, where=f"model {spec.name!r}")
        if given is None and overrides:
            config = config.replace(**overrides)
    elif checkpoint:
        config = checkpoints.config_from_hf(checkpoint, family.from_hf_config, **overrides)
    else:
        if getattr(tok, "vocab_size", None) is not None:
            overrides = {"vocab_size": tok.vocab_size, **overrides}
        config = preset_config(spec, family, **overrides)
    _check_vocabulary(spec, family.logical_dims(config), tok)
    base = rules if rules is not None else partitioning.standard_logical_axis_rules()
    rules = partitioning.fit_rules_to_dims(base, mesh, family.logical_dims(config))
    dtype = jnp.dtype(spec.dtype)
    if checkpoint:
        shardings = partitioning.logical_to_shardings(
            family.param_logical_axes(config), mesh, rules
        )
        digest = checkpoints.WeightsDigest()
        if t5x:
            params = checkpoints.load_t5x(checkpoint, config, shardings, dtype, digest=digest)
        else:
            config, params = family.load_hf(
                checkpoint, shardings=shardings, dtype=dtype, config=config, digest=digest
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
