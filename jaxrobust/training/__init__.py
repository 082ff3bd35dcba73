"""Training: soft prompts and fine-tuning with Optax, checkpointed with Orbax.

`training.train`, `training.TrainOptions`, `training.LossOptions` and
`training.DataOptions` are the names gin files bind (`gin_configs/runs/train_prompt.gin`).
"""

from jaxrobust.training.data import (  # noqa: F401
    DataOptions,
    Encoded,
    ParaphraseBatches,
    TemplateSplit,
    encode_examples,
    heldout_batches,
    split_templates,
)
from jaxrobust.training.trainer import (  # noqa: F401
    ABSENT,
    LossOptions,
    TrainOptions,
    evaluate_heldout,
    load_base_model,
    losses,
    make_optimizer,
    make_train_step,
    merge,
    prompt_initializer,
    subset,
    train,
    trainable_mask,
    trained_model_spec,
)
