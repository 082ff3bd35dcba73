"""Install jaxrobust; `tasks/` is installed as the subpackage `jaxrobust.tasks`."""

import setuptools

setuptools.setup(
    name="jaxrobust",
    version="0.1.0",
    description=(
        "Robustness of instruction-tuned language models to instruction wording, "
        "and soft prompts that improve it (JAX/Flax)."
    ),
    python_requires=">=3.11",  # jax >= 0.7 supports Python 3.11+.
    packages=setuptools.find_packages(include=["jaxrobust", "jaxrobust.*"]) + ["jaxrobust.tasks"],
    package_dir={"jaxrobust.tasks": "tasks"},
    package_data={"jaxrobust.tasks": ["**/*.yaml", "**/*.json"]},
    include_package_data=True,
    install_requires=[
        # jax.sharding.AxisType and make_mesh(axis_types=...) appeared in 0.5.3,
        # jax.set_mesh in 0.7.1; flax 0.12 needs 0.7.1 anyway.
        "jax>=0.7.1",
        # From 0.12 nn.with_logical_constraint sees the mesh set by jax.set_mesh
        # (partitioning.active); before, the model's activation constraints were
        # silently dropped (flax checked only the legacy `with mesh:` context).
        "flax>=0.12",
        "optax",
        "orbax-checkpoint>=0.5",  # CheckpointManager with ocp.args (CheckpointArgs API).
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
        "scipy>=1.15",  # scipy.stats.quantile.
        "matplotlib",
        "tensorboardX",  # Training event files (no TensorFlow/TensorBoard needed).
        "tqdm",  # Progress bars with ETA (eval, training, checkpoint loading).
        "huggingface_hub",  # Hub ids (google/flan-t5-xl) resolved through its cache.
        "etils[epath]",  # The file layer (storage/files.py): local, gs://, memory://.
        "fsspec",  # memory:// (and gcsfs's gs:// where TensorFlow is absent).
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "ruff",
            "scikit-learn",
            "statsmodels",
            # Tests build tokenizers from vocabularies (LlamaTokenizer(vocab=, merges=),
            # T5Tokenizer(vocab=)): transformers 5's tokenizers backend.
            "transformers>=5",
            # The CPU build; an unpinned torch pulls a multi-GB CUDA build.
            "torch==2.13.0",
        ],
    },
)
