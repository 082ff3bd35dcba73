"""Inference: the engine that scores options and generates, for every model family.

The package's public names are the engine's (`inference.Engine`, `inference.bucket`, ...);
model-family scorers and adapters, generation, prompt formats and tokenizers are its modules.
"""

from jaxrobust.inference.engine import (  # noqa: F401
    INVALID,
    Engine,
    RankResult,
    T5Adapter,
    Truncatable,
    bucket,
    make_adapter,
    option_log_likelihoods,
    pooled_encoder_states,
    power_of_two_buckets,
    sun_option_scores,
    truncate_passage,
    truncate_to_fit,
)
