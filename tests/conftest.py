"""Shared test set-up.

Eight forced host devices are set here, before anything imports JAX, so the
sharding tests can build 2 x 4 and 8 x 1 meshes; "one device" in a test means a
1-device mesh over the first of them.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("JAXROBUST_DATA_DIR", REPO_ROOT.parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The read-only shared data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared data not found at {SHARED_DATA} (set JAXROBUST_DATA_DIR to the "
            "folder holding semeval2010_task8/, mmlu/, ...)"
        )
    return SHARED_DATA
