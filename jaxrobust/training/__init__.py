"""Training: soft prompts and fine-tuning with Optax, checkpointed with Orbax.

`training.train`, `training.TrainOptions`, `training.LossOptions` and
`training.DataOptions` are the names gin files bind (`gin_configs/runs/train_prompt.gin`).
Modules: `options` (LossOptions, TrainOptions), `data` (templates and batches),
`loss` (the loss, `losses`), `optimizer` (what trains, Optax), `trainer` (the program).
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
from jaxrobust.training.loss import ABSENT, losses  # noqa: F401
from jaxrobust.training.optimizer import (  # noqa: F401
    make_optimizer,
    merge,
    subset,
    trainable_mask,
)
from jaxrobust.training.options import LossOptions, TrainOptions  # noqa: F401
from jaxrobust.training.trainer import (  # noqa: F401
    evaluate_heldout,
    make_train_step,
    prompt_initializer,
    train,
    trained_model_spec,
)
