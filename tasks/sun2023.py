"""Sun et al. (2023)'s observed sets, added on import: the task module of
gin_configs/runs/sun2023_mmlu_bbl.gin (its ``TASK_MODULES``).

"Evaluating the Zero-shot Robustness of Instruction-tuned Language Models"
took each benchmark's observed instructions from the tuning collection's
templates of the same task category: Flan 2022's multiple-choice QA templates
for MMLU and the BIG-bench Lite tasks (`qa.add_flan_observed`, which also gives
BoolQ Flan's yes/no set) for Flan-T5, P3's multiple-choice prompts of the T0
mixtures (`qa.add_p3_observed`) for T0++. Importing this module registers them
beside the project's unobserved templates (``#observed_flan`` and
``#observed_p3`` mixtures); nothing changes for runs that do not import it.

Their own unobserved instructions join the ``#unobserved`` mixtures when the
environment variable ``JAXROBUST_INSTRUCTIONEVAL`` names a checkout of
jiudingsun01/InstructionEval (no license, so not shipped;
`qa.add_instructioneval`, template ids ``ie_*``).
"""

import os

from jaxrobust.tasks import qa

INSTRUCTIONEVAL = os.environ.get("JAXROBUST_INSTRUCTIONEVAL", "")
TASK_NAMES = qa.add_flan_observed() + qa.add_p3_observed()
if INSTRUCTIONEVAL:
    TASK_NAMES += qa.add_instructioneval(INSTRUCTIONEVAL)
