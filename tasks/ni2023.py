"""Ni et al. (2023)'s relation-extraction protocol, set up on import: the task module
of gin_configs/runs/ni2023_re.gin (its ``TASK_MODULES``).

"Evaluating the Robustness to Instructions of Large Language Models" treats
relation extraction asked as multiple-choice QA (QA4RE's format) as the seen
kind of task: its observed instructions are the multiple-choice QA templates of
the tuning collections, Flan 2022's (`relation_extraction.add_flan_observed`,
``#observed_flan`` of the ``mcqa`` data sets) and P3's (`qa.add_p3_observed`,
``#observed_p3``). Plain RE is the unseen kind (SemEval's PromptSource
prompts are its only observed wording).

QA4RE's own option sentences and type constraints are used when the
environment variable ``JAXROBUST_QA4RE_TEMPLATES`` names a copy of QA4RE's
``projs/re_templates.py`` (the file has no license, so it is not shipped;
`relation_extraction.use_qa4re_options`); otherwise the project's sentences
(`relation_schemas`) stay.
"""

import os

from jaxrobust.tasks import qa, relation_extraction

QA4RE_TEMPLATES = os.environ.get("JAXROBUST_QA4RE_TEMPLATES", "")
TASK_NAMES = []
if QA4RE_TEMPLATES:  # First: the observed sets below are registered over its options.
    TASK_NAMES += relation_extraction.use_qa4re_options(QA4RE_TEMPLATES)
TASK_NAMES += relation_extraction.add_flan_observed()
TASK_NAMES += qa.add_p3_observed()
