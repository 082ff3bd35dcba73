"""One process of a multi-host training step (started by test_multihost.py).

argv: WORKDIR RESULT_NPZ [PROCESS_ID NUM_PROCESSES PORT]. On one 2 x 2 mesh
(data x model) over all processes' devices:

1. the loss and the gradients of every parameter at the first paraphrase batch
   (`training.losses` under `jit`, batch over `data`, weights over `model`),
   fetched replicated;
2. `training.train` for one step into WORKDIR, which writes an Orbax
   checkpoint of step 1 (every process writes its shards; Orbax's primary
   process writes the metadata) and returns the trained prompt.

The byte tokenizer's 259 ids are padded to a 264-row vocabulary (real
checkpoints' vocabularies, T5's 32128, divide the model axis; 259 does not).
"""

import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

workdir, result = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    os.environ.update(
        JAXROBUST_PROCESS_ID=sys.argv[3],
        JAXROBUST_NUM_PROCESSES=sys.argv[4],
        JAXROBUST_COORDINATOR=f"127.0.0.1:{sys.argv[5]}",
    )

from jaxrobust.parallel import distributed  # noqa: E402

distributed.initialize()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import train_tasks  # noqa: E402, F401  (registers jr:toysent:qa)
from flax import traverse_util  # noqa: E402

from jaxrobust import evaluation, inference, training  # noqa: E402
from jaxrobust.inference.tokenizer import ByteTokenizer  # noqa: E402
from jaxrobust.models import prompts  # noqa: E402
from jaxrobust.parallel import partitioning  # noqa: E402
from jaxrobust.training import data as training_data  # noqa: E402

ByteTokenizer.vocab_size = 264

SPEC = evaluation.ModelSpec(name="tiny", preset="tiny", tokenizer="byte")
DATA = training_data.DataOptions(
    task="jr:toysent:qa",
    limit=16,
    batch_size=4,
    num_paraphrases=1,
    max_input_len=64,
    eval_limit=4,
)
LOSS = training.LossOptions(kl_weight=1.0, rep_weight=0.5)
OPTS = training.TrainOptions(
    prompt_length=4,
    optimizer="adam",
    learning_rate=0.1,
    num_steps=1,
    checkpoint_every=1,
    log_every=1,
    model_parallel=2,
)

# ------------------------------------------------ 1. loss and gradients at step 0
mesh = partitioning.make_mesh(data=-1, model=OPTS.model_parallel)
split = training_data.split_templates(DATA)
loaded = inference.load_model(SPEC, mesh)
config, base, tok, rules = loaded.config, loaded.params, loaded.tokenizer, loaded.rules
encoded = training_data.encode_examples(
    split, split.original + split.paraphrase, loaded.adapter(), DATA, DATA.split, DATA.limit
)
batches = training_data.ParaphraseBatches(encoded, len(split.original), DATA, loaded.adapter())
batch = batches.batch(0)
init = training.prompt_initializer(OPTS, base["token_embedder"]["embedding"], tok)
module = prompts.Prompt(OPTS.prompt_length, config.emb_dim, init)
prompt, _ = partitioning.init_sharded(module.init, jax.random.PRNGKey(OPTS.seed), mesh, rules)
params = {"model": base, "prompt": prompt}
batch = {k: jax.device_put(v, partitioning.batch_sharding(mesh, v.ndim)) for k, v in batch.items()}
grad_fn = partitioning.partition(
    jax.value_and_grad(lambda p, b: training.losses(config, p, b, LOSS)[0]),
    mesh,
    rules,
    out_shardings=partitioning.replicated(mesh),
)
loss, grads = grad_fn(params, batch)
out = {"loss": np.asarray(loss)}
for k, v in traverse_util.flatten_dict(jax.device_get(grads), sep="/").items():
    out["grad/" + k] = np.asarray(v)

# ------------------------------------------------ 2. one training step, checkpointed
trained = training.train(SPEC, workdir, DATA, LOSS, OPTS, task_modules=("train_tasks",))
out["trained_prompt"] = np.asarray(jax.device_get(trained["params"]["prompt"]["prompt"]))
out["train_loss"] = np.asarray(trained["metrics"]["loss"])
out["process"] = np.asarray([jax.process_index(), jax.process_count(), jax.device_count()])
np.savez(result, **out)
