"""One process of a multi-host evaluation (started by test_multihost.py).

argv: OUT_DIR RESULT_JSON [PROCESS_ID NUM_PROCESSES PORT]. Runs the `eval`
command of `jaxrobust.main` (2 toy tasks x 2 templates, 7 examples each in
chunks of 3, so the hosts' shares of a chunk are 2 and 1, or 1 and 0) with the
coordinator flags passed through to `distributed.initialize`, on one 2 x 2
mesh (data x model). RESULT_JSON lists every file this process wrote through
`storage.files` (partial files opened, record files committed, whole-file
writes), and the per-host chunk shares it scored.
"""

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

from jaxrobust import main  # noqa: E402
from jaxrobust.parallel import distributed  # noqa: E402
from jaxrobust.storage import files  # noqa: E402

out_dir, result_json = sys.argv[1], sys.argv[2]
flags = []
if len(sys.argv) > 3:
    flags = [
        f"--process_id={sys.argv[3]}",
        f"--num_processes={sys.argv[4]}",
        f"--coordinator=127.0.0.1:{sys.argv[5]}",
    ]

writes: list[str] = []
shares: list[int] = []
open_append, commit = files.AppendFile.__init__, files.AppendFile.commit
write_atomic = files.write_atomic
share = distributed.host_share


def counted_open_append(self, path, keep=0):
    writes.append(str(path))
    return open_append(self, path, keep)


def counted_commit(self, final):
    writes.append(str(final))
    return commit(self, final)


def counted_write_atomic(path, data):
    writes.append(str(path))
    return write_atomic(path, data)


def counted_share(chunk, index, count):
    mine = share(chunk, index, count)
    shares.append(len(mine))
    return mine


files.AppendFile.__init__ = counted_open_append
files.AppendFile.commit = counted_commit
files.write_atomic = counted_write_atomic
distributed.host_share = counted_share

TASKS = [
    "jr:toyqa:qa:toyqa_o1",
    "jr:toyqa:qa:toyqa_u1",
    "jr:toyre:re:toyre_o1",
    "jr:toyre:re:toyre_u1",
]
code = main.main(
    [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        f"--gin.MIXTURES={TASKS!r}",
        f"--gin.OUTPUT_DIR='{out_dir}'",
        "--gin.TASK_MODULES=['eval_tasks']",
        "--gin.LIMIT=7",
        "--gin.CHUNK_SIZE=3",
        "--gin.BATCH_SIZE=4",
        "--gin.MAX_INPUT_LEN=64",
        "--gin.MODEL_PARALLEL=2",
        "--gin.RECORD_POOLED=True",
        "--gin.evaluation.EvalOptions.progress=False",
        *flags,
    ]
)
import jax  # noqa: E402

pathlib.Path(result_json).write_text(
    json.dumps(
        {
            "code": code,
            "process": jax.process_index(),
            "count": jax.process_count(),
            "mesh_devices": jax.device_count(),
            "writes": writes,
            "shares": shares,
        }
    )
)
