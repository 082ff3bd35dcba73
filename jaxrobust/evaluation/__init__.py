"""Evaluation: the gin-configured runner that writes verified, resumable record files.

`evaluation.run`, `evaluation.ModelSpec` and `evaluation.EvalOptions` are the names gin
files bind (`gin_configs/runs/eval.gin`); `ModelSpec` is the model factory's
(`inference.loading`), re-exported here. Modules: `options` (EvalOptions, record
headers), `examples` (tasks and their examples), `resume` (one record file brought to
completion), `guards` (the folder's lock, one run per model name, finite scores),
`runner` (the engine, scoring, the run).
"""

from jaxrobust.evaluation.examples import (  # noqa: F401
    check_same_data,
    data_fingerprint,
    resolve_tasks,
    task_examples,
)
from jaxrobust.evaluation.options import EvalOptions, file_header, result_config  # noqa: F401
from jaxrobust.evaluation.resume import Progress, evaluate_file, is_complete  # noqa: F401
from jaxrobust.evaluation.runner import (  # noqa: F401
    RUNS_DIR,
    build_engine,
    load_soft_prompt,
    make_scorer,
    run,
)
from jaxrobust.inference.loading import ModelSpec  # noqa: F401
