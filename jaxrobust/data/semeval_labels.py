"""SemEval-2010 Task 8's label set, named once for the reader, the task
registrations and the official scorer's port.

Nine relations, each in both directions (`Cause-Effect(e1,e2)`, ...), and
`Other`. `LABELS` is in the order of the HF `sem_eval_2010_task_8` ClassLabel,
which is also the order of PromptSource's answer choices for the data set.
"""

RELATIONS = (
    "Cause-Effect",
    "Component-Whole",
    "Content-Container",
    "Entity-Destination",
    "Entity-Origin",
    "Instrument-Agency",
    "Member-Collection",
    "Message-Topic",
    "Product-Producer",
)
DIRECTIONS = ("e1,e2", "e2,e1")
OTHER = "Other"
LABELS = tuple(f"{r}({d})" for r in RELATIONS for d in DIRECTIONS) + (OTHER,)
