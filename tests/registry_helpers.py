"""A fixture that puts the task and mixture registries back after a test that registers.

Import it into a test module (``from registry_helpers import restore_registries``)
and name it in the test's arguments.
"""

import pytest
import seqio
from jaxrobust.tasks import extending, registry


@pytest.fixture
def restore_registries():
    """Removes what the test registered and restores every mixture it changed."""
    tables = (registry.REGISTERED, registry._RECORD_FILES, registry.SPECS, extending.POOLS)
    saved = [dict(table) for table in tables]
    mixtures = {name: list(members) for name, members in registry.MIXTURES.items()}
    task_names = set(seqio.TaskRegistry.names())
    mixture_names = set(seqio.MixtureRegistry.names())
    yield
    for name in set(seqio.MixtureRegistry.names()) - mixture_names:
        seqio.MixtureRegistry.remove(name)
    for name in set(seqio.TaskRegistry.names()) - task_names:
        seqio.TaskRegistry.remove(name)
    for table, old in zip(tables, saved, strict=True):
        table.clear()
        table.update(old)
    for name in set(registry.MIXTURES) - set(mixtures):
        del registry.MIXTURES[name]
    for name, members in mixtures.items():
        if registry.MIXTURES[name] != members:
            registry.add_mixture(name, members)
