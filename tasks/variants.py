"""Format variants of a registered data set: ``jr:<dataset>:<format>#variants``.

`register_variants` reads the structured format descriptions of the data set's
bank (``formats:`` in ``tasks/banks/<family>.yaml``, see
`jaxrobust.data.formats`), generates each description's base template and `n`
variants (deterministic from `seed`) and adds them to the data set with
`extending.add_templates`: every one is a task
``jr:<dataset>:<format>:<description id>[_vNN]`` in the ``#variants`` and
``#all`` mixtures (group ``variants``, provenance ``unobserved``)::

    from jaxrobust.tasks import variants

    variants.register_variants("jr:world_mc:qa", 24, seed=0)  # 2 descriptions: 50 tasks
    variants.register_variants("jr:mmlu:qa", 8)  # every MMLU subject

Nothing is registered by importing this module, so the default mixtures stay
as they are; call it from a module named in ``TASK_MODULES``.
"""

from __future__ import annotations

import pathlib

from jaxrobust.tasks import extending, registry

from jaxrobust.data import formats
from jaxrobust.data import templates as tmpl

BANKS = pathlib.Path(__file__).parent / "banks"


def descriptions(family: str) -> list[formats.Description]:
    """The format descriptions of a bank family (``tasks/banks/<family>.yaml``).

    Raises:
      KeyError: no bank file of that family, or it describes no formats.
    """
    path = BANKS / f"{family}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in BANKS.glob("*.yaml"))
        raise KeyError(f"no bank file {path} for family {family!r}; banks: {known}")
    found = formats.load_formats(path)
    if not found:
        raise KeyError(f"{path} has no 'formats:' descriptions to generate variants from")
    return found


def bank_variants(family: str, n: int, *, seed: int = 0) -> list[tmpl.Template]:
    """Every description's base template and `n` variants of it, in bank order."""
    return [t for d in descriptions(family) for t in formats.variants(d, n, seed=seed)]


def register_variants(name: str, n: int, *, seed: int = 0) -> list[str]:
    """Registers `n` variants per format description of a data set's bank.

    Args:
      name: ``jr:<dataset>:<format>`` as registered, or a pool (``jr:mmlu:qa``).
      n: variants per description (besides its base template).
      seed: which variants are drawn.

    Returns:
      The new task names (`extending.add_templates`).
    """
    bases = extending.POOLS.get(name, [name])
    if bases[0] not in registry.SPECS:
        # add_templates names close matches.
        return extending.add_templates(name, [])
    family = registry.SPECS[bases[0]].family
    return extending.add_templates(name, bank_variants(family, n, seed=seed), seed=seed)
