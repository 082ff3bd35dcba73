"""Loading and saving model parameters: HF directories, T5X checkpoints, Orbax.

- `hf_files`: the files of an HF directory (safetensors, shards, `.bin`,
  `config.json`), checked against their own headers before anything is read,
  and `WeightsDigest`, a content digest computed as the tensors are read;
- `placing`: shapes checked against the model, then each tensor placed in its
  sharding with little host memory (`assemble`);
- `hf`: HF T5 and LLaMA directories, loaded and exported;
- `native`: T5X checkpoints and our Orbax params.

Every failure is a `CheckpointError` naming the file and what is wrong.
"""

from jaxrobust.checkpoints.hf import (
    export_hf_llama,
    export_hf_t5,
    llama_param_shapes,
    load_hf_llama,
    load_hf_t5,
    t5_param_shapes,
)
from jaxrobust.checkpoints.hf_files import (
    CheckpointError,
    HFTensors,
    SafetensorsFile,
    WeightsDigest,
    config_from_hf,
    read_hf_config,
)
from jaxrobust.checkpoints.native import (
    is_t5x,
    load_t5x,
    restore_params,
    save_params,
    t5x_config,
)
from jaxrobust.checkpoints.placing import (
    CHUNK_BYTES,
    Source,
    abstract_param_shapes,
    assemble,
    hf_items,
    hf_source,
)

__all__ = [
    "CHUNK_BYTES",
    "CheckpointError",
    "HFTensors",
    "SafetensorsFile",
    "Source",
    "WeightsDigest",
    "abstract_param_shapes",
    "assemble",
    "config_from_hf",
    "export_hf_llama",
    "export_hf_t5",
    "hf_items",
    "hf_source",
    "is_t5x",
    "llama_param_shapes",
    "load_hf_llama",
    "load_hf_t5",
    "load_t5x",
    "read_hf_config",
    "restore_params",
    "save_params",
    "t5_param_shapes",
    "t5x_config",
]
