"""One process of a multi-host rank-classification run (started by test_multihost.py).

argv: OUT_JSON [PROCESS_ID NUM_PROCESSES PORT]. Each process holds an unequal
share of the examples (process 0: the first 5, process 1: the other 3); each is
scored without and with a soft prompt.
"""

import json
import os
import sys

out_path = sys.argv[1]
if len(sys.argv) > 2:
    os.environ.update(
        JAXROBUST_PROCESS_ID=sys.argv[2],
        JAXROBUST_NUM_PROCESSES=sys.argv[3],
        JAXROBUST_COORDINATOR=f"127.0.0.1:{sys.argv[4]}",
    )

from jaxrobust.parallel import distributed  # noqa: E402

cluster = distributed.initialize()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust import inference  # noqa: E402
from jaxrobust.inference.tokenizer import ByteTokenizer  # noqa: E402
from jaxrobust.models import t5, t5_config  # noqa: E402
from jaxrobust.parallel import partitioning  # noqa: E402

EXAMPLES = [
    (
        f"Question {i}: is the sky {'blue' * (i % 3 + 1)} today? Answer yes or no.",
        ["yes", "no", "maybe"][: 2 + i % 2],
    )
    for i in range(8)
]
SHARES = {1: [range(0, 8)], 2: [range(0, 5), range(5, 8)]}

tok = ByteTokenizer()
config = t5_config.get_preset("tiny", vocab_size=264)  # >= 259 bytes, divisible by the mesh
variables = t5.T5(config).init(jax.random.PRNGKey(0), *t5.dummy_inputs())
params = jax.tree_util.tree_map(
    lambda x: np.asarray(x.value if hasattr(x, "value") else x),
    variables["params"],
    is_leaf=lambda x: hasattr(x, "value"),
)
mesh = partitioning.make_mesh(2, 2)
engine = inference.Engine(config, params, tok, mesh=mesh, batch_size=4, max_input_len=128)
mine = SHARES[jax.process_count()][jax.process_index()]
inputs, options = [EXAMPLES[i][0] for i in mine], [EXAMPLES[i][1] for i in mine]
# The soft prompt is a replicated argument of the scorer: the same on every process.
prompt = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (3, config.emb_dim)), np.float32)
results = engine.rank_classify(inputs, options)
prompted = engine.rank_classify(inputs, options, prefix_embeddings=prompt)
records = {
    str(i): {
        "scores": [float(s) for s in r.scores],
        "prediction": int(r.prediction),
        "prompt_scores": [float(s) for s in p.scores],
        "prompt_prediction": int(p.prediction),
    }
    for i, r, p in zip(mine, results, prompted, strict=True)
}
with open(out_path, "w") as f:
    json.dump(
        {
            "process": jax.process_index(),
            "count": jax.process_count(),
            "records": records,
            "traces": engine.trace_counts,
        },
        f,
    )
