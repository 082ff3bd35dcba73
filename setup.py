"""Install jaxrobust; `tasks/` is installed as the subpackage `jaxrobust.tasks`."""

import setuptools

setuptools.setup(
    name="jaxrobust",
    version="0.1.0",
    description=(
        "Robustness of instruction-tuned language models to instruction wording, "
        "and soft prompts that improve it (JAX/Flax)."
    ),
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["jaxrobust", "jaxrobust.*"]) + ["jaxrobust.tasks"],
    package_dir={"jaxrobust.tasks": "tasks"},
    package_data={"jaxrobust.tasks": ["**/*.yaml", "**/*.json"]},
    include_package_data=True,
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax",
        "orbax-checkpoint",
        "transformers>=4.40",
        "tokenizers",
        "sentencepiece",
        "safetensors",
        "seqio",
        "gin-config",
        "msgpack",
        "numpy",
        "jinja2",
        "pyyaml",
        "tensorstore",
        "scipy",
        "matplotlib",
        "tensorboardX",  # training.py event files (no TensorFlow/TensorBoard needed).
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "ruff",
            "scikit-learn",
            "statsmodels",
            # The CPU build; an unpinned torch pulls a multi-GB CUDA build.
            "torch==2.13.0",
        ],
    },
)
