"""Two JAX processes on loopback (gloo CPU collectives, 2 devices each, one 2 x 2
mesh across them) against one process holding all 4 devices."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxrobust.parallel import distributed

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXROBUST_")}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    return env


def run_multihost(
    worker: pathlib.Path,
    tmp_path: pathlib.Path,
    args: tuple[list[str], list[str]] = ([], []),
    logs: list[str] | None = None,
    suffix: str = ".json",
):
    """Runs `worker` as 2 processes x 2 devices and as 1 process x 4 devices.

    `args` are the extra arguments (before the output file, process id, count
    and port) of the 2-process run and of the 1-process run; `logs`, when given,
    receives the two processes' combined stdout/stderr. Outputs are JSON files,
    or `.npz` files (loaded with numpy) when `suffix` is ".npz". There is no
    deadline here (a busy machine is slow, not wrong): a hang is stopped by
    pytest-timeout, and the `finally` below then kills both processes.

    Returns (the two processes' outputs, the single process's).
    """
    port = _free_port()
    outs = [tmp_path / f"p{i}{suffix}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), *args[0], str(outs[i]), str(i), "2", str(port)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for i in range(2)
    ]
    try:
        texts = [p.communicate()[0] for p in procs]
    finally:
        for p in procs:  # Nothing may hang: kill what is left.
            p.kill()
    for p, log in zip(procs, texts, strict=True):
        assert p.returncode == 0, log[-3000:]
    if logs is not None:
        logs.extend(texts)
    single = tmp_path / f"single{suffix}"
    done = subprocess.run(
        [sys.executable, str(worker), *args[1], str(single)],
        env=_env(4),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    def load(path):
        return dict(np.load(path)) if suffix == ".npz" else json.loads(path.read_text())

    return [load(o) for o in outs], load(single)


@pytest.mark.heavy
def test_two_process_rank_classification_equals_one_process(tmp_path):
    multi, single = run_multihost(HERE / "multihost" / "engine_worker.py", tmp_path)
    assert [m["count"] for m in multi] == [2, 2] and single["count"] == 1
    merged = {**multi[0]["records"], **multi[1]["records"]}
    assert sorted(merged, key=int) == sorted(single["records"], key=int)
    for key, rec in single["records"].items():
        for prefix in ("", "prompt_"):  # Without and with a soft prompt.
            got = merged[key]
            assert got[prefix + "prediction"] == rec[prefix + "prediction"], key
            np.testing.assert_allclose(
                got[prefix + "scores"], rec[prefix + "scores"], atol=1e-5, rtol=1e-5
            )
        assert rec["prompt_scores"] != rec["scores"]
    # Both hosts ran the same programs (the short host padded with dummy batches).
    assert multi[0]["traces"] == multi[1]["traces"]


def test_resolve_cluster_from_arguments_and_environment():
    assert distributed.resolve_cluster({}).kind == "single"
    c = distributed.resolve_cluster({}, "10.0.0.1:1234", 4, 3)
    assert (c.kind, c.coordinator, c.num_processes, c.process_id) == (
        "explicit",
        "10.0.0.1:1234",
        4,
        3,
    )
    env = {
        "JAXROBUST_COORDINATOR": "h:1",
        "JAXROBUST_NUM_PROCESSES": "2",
        "JAXROBUST_PROCESS_ID": "1",
    }
    assert distributed.resolve_cluster(env).process_id == 1
    slurm = distributed.resolve_cluster(
        {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}
    )
    assert (slurm.kind, slurm.num_processes, slurm.process_id) == ("slurm", 8, 5)
    assert distributed.resolve_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}).kind == "single"
    tpu = distributed.resolve_cluster({"TPU_WORKER_HOSTNAMES": "a,b,c,d", "TPU_WORKER_ID": "2"})
    assert (tpu.kind, tpu.num_processes, tpu.process_id) == ("tpu", 4, 2)


def test_resolve_cluster_rejects_partial_or_bad_arguments():
    with pytest.raises(ValueError, match="coordinator address, process count and process id"):
        distributed.resolve_cluster({}, "h:1", 2, None)
    with pytest.raises(ValueError, match=r"process_id 2 is not in \[0, 2\)"):
        distributed.resolve_cluster({}, "h:1", 2, 2)


@pytest.mark.heavy
def test_two_process_evaluation_equals_one_process(tmp_path):
    """`main eval` on 2 hosts: byte-equal record files, each written once, by process 0."""
    from sklearn.metrics import accuracy_score, f1_score

    from jaxrobust.analysis import report, scoring
    from jaxrobust.storage import records

    multi_dir, single_dir = tmp_path / "multi", tmp_path / "single"
    logs: list[str] = []
    multi, single = run_multihost(
        HERE / "multihost" / "eval_worker.py",
        tmp_path,
        args=([str(multi_dir)], [str(single_dir)]),
        logs=logs,
    )
    assert [(m["process"], m["count"], m["mesh_devices"]) for m in multi] == [(0, 2, 4), (1, 2, 4)]
    # Unequal shares: 7 examples in chunks of 3 -> hosts score (2, 1), (2, 1), (1, 0).
    assert multi[0]["shares"] == [2, 2, 1] * 4 and multi[1]["shares"] == [1, 1, 0] * 4
    assert single["shares"] == [3, 3, 1] * 4

    names = sorted(p.name for p in (single_dir / "records" / "tiny-t5").glob("*.jsonl"))
    assert len(names) == 4
    for name in names:  # Byte-equal: same scores, predictions, pooled sums, checksums.
        a = (multi_dir / "records" / "tiny-t5" / name).read_bytes()
        assert a == (single_dir / "records" / "tiny-t5" / name).read_bytes(), name
        assert records.read_records(multi_dir / "records" / "tiny-t5" / name).pooled_sum.any()
    # Exactly one writer: process 0 finished each record file once; process 1 wrote nothing.
    finished = [w for w in multi[0]["writes"] if w.endswith(".jsonl")]
    assert sorted(pathlib.Path(w).name for w in finished) == names
    assert multi[1]["writes"] == []
    assert not list(multi_dir.rglob("*.partial")) and not list(multi_dir.rglob("*.tmp"))
    # Log lines name their process; only process 0 logs writing files.
    assert "[process 0/2]" in logs[0] and "[process 1/2]" in logs[1]
    for name in names:
        assert logs[0].count(f"{name} (7 records)") == 1 and name not in logs[1]
    # Metrics from the records: the report's per-template scores and summaries are
    # equal, and each score is what sklearn makes of that record file's predictions.
    analysed = [report.analyse(*scoring.load(d), n_resamples=50) for d in (multi_dir, single_dir)]
    rows = analysed[1].rows
    assert sorted(r.template_id for r in rows) == ["toyqa_o1", "toyqa_u1", "toyre_o1", "toyre_u1"]
    for row in rows:
        (path,) = (single_dir / "records" / "tiny-t5").glob(f"*{row.template_id}*.jsonl")
        recs = records.read_records(path).records
        gold = [r["gold_label"] for r in recs]
        pred = [r["predicted_label"] for r in recs]
        if row.metric == "accuracy":
            expected = accuracy_score(gold, pred)
        else:  # Micro-F1 over the relation labels, the negative label left out.
            labels = sorted({lab for r in recs for lab in r["option_labels"]})
            negative = {r["negative_label"] for r in recs}
            positive = [lab for lab in labels if lab not in negative]
            expected = f1_score(gold, pred, labels=positive, average="micro", zero_division=0)
        assert row.n_examples == 7
        assert row.score == pytest.approx(expected, abs=1e-12), row
    assert {r.metric for r in rows} == {"accuracy", "micro_f1"}
    assert 0 < np.mean([r.score for r in rows]) < 1  # Not all-correct or all-wrong.
    pair = [(a.rows, a.summaries) for a in analysed]
    assert json.dumps(pair[0], default=vars) == json.dumps(pair[1], default=vars)


@pytest.mark.heavy
def test_two_process_training_step_equals_one_process_and_checkpoint_restores(tmp_path):
    """One step on 2 hosts: loss and gradients as on 1 host; its checkpoint restores in 1."""
    import jax
    import orbax.checkpoint as ocp

    multi_dir, single_dir = tmp_path / "multi", tmp_path / "single"
    multi, single = run_multihost(
        HERE / "multihost" / "train_worker.py",
        tmp_path,
        args=([str(multi_dir)], [str(single_dir)]),
        suffix=".npz",
    )
    assert [m["process"].tolist() for m in multi] == [[0, 2, 4], [1, 2, 4]]
    grads = sorted(k for k in single if k.startswith("grad/"))
    assert "grad/prompt/prompt" in grads and len(grads) > 10
    for m in multi:  # Both processes hold the same replicated values.
        np.testing.assert_allclose(m["loss"], single["loss"], atol=1e-5, rtol=1e-5)
        for k in grads:
            np.testing.assert_allclose(m[k], single[k], atol=1e-5, rtol=1e-5, err_msg=k)
        np.testing.assert_allclose(m["train_loss"], single["loss"], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(
            m["trained_prompt"], single["trained_prompt"], atol=1e-5, rtol=1e-5
        )
    assert np.abs(single["grad/prompt/prompt"]).max() > 0
    # The 2-process checkpoint restores here, in one process, onto one device.
    manager = ocp.CheckpointManager(multi_dir / "checkpoints")
    assert manager.all_steps() == [1]
    saved = ocp.StandardCheckpointer().metadata(multi_dir / "checkpoints" / "1" / "state")
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), saved.item_metadata
    )
    state = manager.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))[
        "state"
    ]
    assert int(state["step"]) == 1
    np.testing.assert_array_equal(
        np.asarray(state["trainable"]["prompt"]["prompt"]), multi[0]["trained_prompt"]
    )
    assert "model" not in state["trainable"]  # Frozen parameters are not checkpointed.


# ---------------------------------------------------------------------------
# Cheap checks of the pieces: shares, flags, the object-store write path.
# ---------------------------------------------------------------------------


def test_host_shares_are_tf_data_shards_and_interleave_back():
    """`host_share` is SeqIO's ShardInfo order (tf.data `shard`); `interleave` inverts it."""
    import tensorflow as tf

    for n in (1, 5, 7, 8):
        chunk = list(range(n))
        for count in (1, 2, 3):
            shares = [distributed.host_share(chunk, i, count) for i in range(count)]
            tf_shards = [
                [int(x) for x in tf.data.Dataset.range(n).shard(count, i)] for i in range(count)
            ]
            assert shares == tf_shards
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
            assert distributed.interleave(shares) == chunk


def test_main_passes_cluster_flags_to_initialize(monkeypatch, tmp_path):
    from jaxrobust import main

    calls = []

    class Stop(Exception):
        pass

    def fake_initialize(*args):
        calls.append(args)
        raise Stop

    monkeypatch.setattr(distributed, "initialize", fake_initialize)
    flags = ["--coordinator=10.0.0.1:1234", "--num_processes=4", "--process_id=3"]
    for command in (["score"], ["eval", "--gin_file=gin_configs/runs/eval.gin"]):
        with pytest.raises(Stop):
            main.main(command + flags)
    with pytest.raises(Stop):
        main.main(["eval"])  # No flags: the environment (or TPU / SLURM) decides.
    assert calls == [("10.0.0.1:1234", 4, 3)] * 2 + [(None, None, None)]
    # `report` needs no JAX; on a process other than 0 it writes nothing.
    monkeypatch.setenv("JAXROBUST_COORDINATOR", "h:1")
    monkeypatch.setenv("JAXROBUST_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAXROBUST_PROCESS_ID", "1")
    assert main.main(["report", f"--output_dir={tmp_path}"]) == 0
    assert list(tmp_path.iterdir()) == []


def _write_records(final, header, chunks, stop_after=None):
    from jaxrobust.storage import records

    writer = records.PartialWriter(final, header, chunk_size=2)
    try:
        for k, chunk in enumerate(chunks[writer.n_done // 2 :]):
            if stop_after is not None and k == stop_after:
                return writer.n_done  # A preemption: the partial file stays.
            writer.append_chunk(chunk, None)
        writer.finish()
    finally:
        writer.close()
    return writer.n_done


def test_object_store_write_path_resumes_and_matches_local(tmp_path, monkeypatch):
    """The gs:// path of `PartialWriter` (whole-object rewrites, rename = copy + delete),
    exercised on local files through epath paths: same bytes as the append path."""
    from etils import epath

    from jaxrobust.storage import files, records

    header = {"kind": "header", "format_version": records.FORMAT_VERSION, "n_examples": 6}
    chunks = [
        [{"example_id": f"e{i}", "scores": [i / 7, -1.5]} for i in (k, k + 1)] for k in (0, 2, 4)
    ]
    local = tmp_path / "local" / "t.jsonl"
    assert _write_records(local, header, chunks) == 6  # A plain pathlib path.

    monkeypatch.setattr(files, "is_local", lambda path: False)
    remote = epath.Path(tmp_path) / "remote" / "t.jsonl"
    assert _write_records(remote, header, chunks, stop_after=2) == 4
    partial = remote.with_name("t.jsonl.partial")
    assert partial.exists() and not remote.exists()
    assert _write_records(remote, header, chunks) == 6  # Resumed from the last chunk.
    assert not partial.exists()
    assert remote.read_bytes() == local.read_bytes()
    assert [r["example_id"] for r in records.read_records(remote).records] == [
        f"e{i}" for i in range(6)
    ]
    files.write_json(epath.Path(tmp_path) / "remote" / "model.json", {"a": 1})
    assert json.loads((tmp_path / "remote" / "model.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == ["model.json", "t.jsonl"]
