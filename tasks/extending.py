"""Adding templates to data sets already registered, and pooled data sets.

`add_templates` is the one call for new instructions on a data set this
package (or a user's module) registered: SemEval, BoolQ, TACRED, MMLU across
its 57 subjects, ... Each template becomes a task of the data set and joins its
mixtures (``#all`` and its provenance group's, e.g. ``#unobserved``); nothing
already registered is dropped or replaced::

    from jaxrobust.data import templates
    from jaxrobust.tasks import extending

    bank = templates.load_bank("my_semeval_bank.yaml")
    extending.add_templates("jr:semeval:re", bank)  # jr:semeval:re#all grows by len(bank)
    extending.add_templates("jr:mmlu:qa", templates.load_bank("my_mmlu_bank.yaml"))

A module that calls it is imported by ``eval`` through ``TASK_MODULES`` like
any module that registers tasks. A *pool* (`add_pool`) is one data set made of
several registered ones: MMLU's subjects, pooled as Sun et al. pool them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from jaxrobust.tasks import registry

from jaxrobust.data import templates as tmpl

# pooled base (``jr:mmlu:qa``) -> the bases it pools (``jr:mmlu_<subject>:qa``).
POOLS: dict[str, list[str]] = {}


def _template_keys(base: str) -> list[str]:
    return [n.rsplit(":", 1)[1] for n in registry.REGISTERED if n.rsplit(":", 1)[0] == base]


def _groups(base: str) -> list[str]:
    return [m.split("#", 1)[1] for m in registry.MIXTURES if m.startswith(f"{base}#")]


def add_pool(pool: str, bases: Sequence[str]) -> list[str]:
    """Pools data sets registered under `bases` into one data set named `pool`.

    ``<pool>:<template>`` mixes that template's task of every base, and
    ``<pool>#<group>`` every base's ``#<group>`` mixture (``jr:mmlu:qa:mmlu_u01``,
    ``jr:mmlu:qa#all``). Only templates and groups every base has are pooled.
    Calling it again rebuilds the pool from what the bases hold now.

    Returns:
      The pool's mixture names.
    """
    POOLS[pool] = list(bases)
    keys = [_template_keys(b) for b in bases]
    groups = [_groups(b) for b in bases]
    names = [
        registry.add_mixture(f"{pool}:{k}", [f"{b}:{k}" for b in bases])
        for k in keys[0]
        if all(k in other for other in keys[1:])
    ]
    return names + [
        registry.add_mixture(f"{pool}#{g}", [f"{b}#{g}" for b in bases])
        for g in groups[0]
        if all(g in other for other in groups[1:])
    ]


def add_templates(name: str, templates: Sequence[tmpl.Template], *, seed: int = 0) -> list[str]:
    """Adds templates to a data set that is already registered (see the module docstring).

    Every template is checked on every data set it joins before anything is
    registered, so a failure leaves the registries as they were.

    Args:
      name: the data set and format as in its task names, ``jr:<dataset>:<format>``
        (``jr:semeval:re``, ``jr:tacred:mcqa``, ``jr:boolq:qa``), or a pool
        (``jr:mmlu:qa``: every subject, and the pool's mixtures).
      templates: the new templates, e.g. a bank from `templates.load_bank`.
      seed: render seed of the templates' random choices.

    Returns:
      The new task names.

    Raises:
      KeyError: nothing is registered under `name`; names close matches.
      registry.RegistrationError: a template's task name or record file is
        taken by a different template.
      templates.TemplateError: a template fails on the data set's sample.
    """
    bases = POOLS.get(name, [name])
    seen: dict[str, str] = {}  # casefolded template key -> first template id
    for template in templates:
        key = registry.template_key(template)
        first = seen.setdefault(key.casefold(), template.id)
        if first != template.id:
            raise registry.RegistrationError(
                f"templates {first!r} and {template.id!r} both give tasks (and record files) "
                f"named {name}:{key}, up to case; rename one of them"
            )
    for base in bases:
        if base not in registry.SPECS:
            close = difflib.get_close_matches(base, list(registry.SPECS) + list(POOLS), n=5)
            raise KeyError(f"no data set is registered as {base!r}; close names: {close}")
        spec = registry.SPECS[base]
        for template in templates:
            task = registry.task_name(spec, template)
            previous = registry.REGISTERED.get(task)
            if previous is not None and previous[1] != template:
                raise registry.RegistrationError(
                    f"{base} already has a template {previous[1].id!r} (task {task}, from "
                    f"{previous[1].bank or 'no bank file'}); give the new one "
                    f"({template.bank or 'no bank file'}) another id"
                )
            registry.check_registrable(spec, template, task, seed)
    names = []
    for base in bases:
        names += registry.register_with_mixtures(registry.SPECS[base], templates, seed=seed)
    if name in POOLS:
        add_pool(name, bases)
    return names
