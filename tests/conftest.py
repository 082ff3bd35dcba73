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
# Set by `.ci/run`: a test that needs the shared data fails without it instead
# of skipping, so a CI machine without the data cannot stay green.
REQUIRE_DATA = "JAXROBUST_REQUIRE_DATA"


def data_required() -> bool:
    """Whether `$JAXROBUST_REQUIRE_DATA` is set (to anything but '' or '0')."""
    return os.environ.get(REQUIRE_DATA, "") not in ("", "0")


def data_missing(message: str) -> None:
    """Skips the calling test for missing shared data, or fails it under `$JAXROBUST_REQUIRE_DATA`.

    Every data-gated test goes through here (never a bare `pytest.skip`); a test
    that only leaves out some checks without the data asserts `not data_required()`.
    """
    if data_required():
        pytest.fail(f"{message} (and {REQUIRE_DATA} is set: the data is required)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The read-only shared data folder; see `data_missing` for when it is absent."""
    if not SHARED_DATA.is_dir():
        data_missing(
            f"shared data not found at {SHARED_DATA} (set JAXROBUST_DATA_DIR to the "
            "folder holding semeval2010_task8/, mmlu/, ...)"
        )
    return SHARED_DATA
