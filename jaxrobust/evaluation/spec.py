"""`ModelSpec`: one model to evaluate (or to train from), named by a gin file.

Gin binds it as `evaluation.ModelSpec`, one per `gin_configs/models/*.gin`; the
evaluation runner (`evaluation.runner.build_engine`) and the trainer
(`training.load_base_model`) build the model it names.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate; gin binds one per `gin_configs/models/*.gin`."""

    name: str  # Label in paths, records and report rows, e.g. 'flan-t5-xl'.
    family: str = "t5"  # Architecture: 't5' or 'llama'.
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
