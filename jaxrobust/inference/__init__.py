"""Inference: the engine that scores options and generates, for every model family.

The package's public names are the engine's (`inference.Engine`, `inference.bucket`, ...)
and the model factory's (`inference.load_model`, `inference.ModelSpec`, the family
registry); its modules: `engine` (Engine), `batching` (truncation, buckets),
`option_trie` (mode "ni"'s option trie), `families` (the registry), `loading`
(ModelSpec, load_model), `t5` and `llama` (each family's scorers, adapter and
declaration), `generation`, `prompt_formats`, `tokenizer`.
"""

from jaxrobust.inference.batching import (  # noqa: F401
    Truncatable,
    bucket,
    length_buckets,
    power_of_two_buckets,
    truncate_passage,
    truncate_to_fit,
)
from jaxrobust.inference.engine import Engine, RankResult, make_adapter  # noqa: F401
from jaxrobust.inference.families import (  # noqa: F401
    Family,
    for_config,
    get_family,
    known_families,
    register_family,
)
from jaxrobust.inference.generation import NO_MATCH  # noqa: F401
from jaxrobust.inference.loading import (  # noqa: F401
    LoadedModel,
    ModelSpec,
    load_model,
    make_tokenizer,
)
from jaxrobust.inference.t5 import (  # noqa: F401
    T5Adapter,
    option_log_likelihoods,
    pooled_encoder_states,
    sun_option_scores,
)
