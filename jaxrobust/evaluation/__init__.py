"""Evaluation: the gin-configured runner that writes verified, resumable record files.

`evaluation.run`, `evaluation.ModelSpec` and `evaluation.EvalOptions` are the names gin
files bind (`gin_configs/runs/eval.gin`).
"""

from jaxrobust.evaluation.runner import (  # noqa: F401
    RUNS_DIR,
    EvalOptions,
    ModelSpec,
    Progress,
    build_engine,
    data_fingerprint,
    evaluate_file,
    load_soft_prompt,
    make_scorer,
    resolve_tasks,
    result_config,
    run,
    task_examples,
)
