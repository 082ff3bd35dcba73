"""Checkpoint formats: HF directories, T5X (msgpack and tensorstore), Orbax; bad input:
damaged files refused by name, and the weights digest."""

import json
import pathlib
import struct
import subprocess
import sys

import jax
import ml_dtypes
import msgpack
import numpy as np
import pytest
import torch
import transformers
from flax import serialization, traverse_util
from parity_helpers import PARITY_TOL, T5_FAMILIES, assert_logprobs_close, make_hf_t5, padded_batch
from safetensors.numpy import load_file, save_file

from jaxrobust import checkpoints
from jaxrobust.checkpoints import placing
from jaxrobust.models import t5, t5_config, t5_hf
from jaxrobust.parallel import partitioning

# The widths of T5X's own test checkpoint (shared/data/t5x/README facts).
T5X_TINY = t5_config.T5Config(
    vocab_size=32128,
    emb_dim=8,
    num_heads=4,
    head_dim=3,
    mlp_dim=16,
    num_encoder_layers=2,
    num_decoder_layers=2,
)


def _flat(params):
    return traverse_util.flatten_dict(jax.device_get(params), sep="/")


def _hf_logits(model, enc, dec_in):
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(enc),
            attention_mask=torch.tensor(enc != 0),
            decoder_input_ids=torch.tensor(dec_in),
        ).logits.numpy()


def test_t5x_legacy_checkpoint_matches_hf(shared_data_dir, tmp_path):
    """T5X's test checkpoint loads with no renaming and agrees with HF on the same weights."""
    path = shared_data_dir / "t5x" / "test_t5_tiny.checkpoint_0"
    params = checkpoints.load_t5x(path, T5X_TINY)
    raw = serialization.msgpack_restore(path.read_bytes())["optimizer"]["target"]
    for k, v in traverse_util.flatten_dict(raw, sep="/").items():
        np.testing.assert_array_equal(_flat(params)[k], v)  # no renaming, no transposes

    checkpoints.export_hf_t5(params, T5X_TINY, tmp_path)  # our mapping, in reverse
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    enc, dec_in, _, mask = padded_batch(T5X_TINY.vocab_size)
    ours = t5.T5(T5X_TINY).apply({"params": params}, enc, dec_in)
    assert_logprobs_close(np.asarray(ours), _hf_logits(hf, enc, dec_in), mask, PARITY_TOL)


def _write_tensorstore_checkpoint(params, directory: pathlib.Path):
    """T5X's tensorstore layout, written here with tensorstore itself."""
    import tensorstore as ts

    directory.mkdir()
    specs = {}
    for path, value in _flat(params).items():
        name = "target." + path.replace("/", ".")
        spec = {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": name},
            "metadata": {
                "shape": list(value.shape),
                "chunks": list(value.shape),
                "dtype": "<f4",
                "compressor": {"id": "gzip"},
            },
        }
        absolute = json.loads(json.dumps(spec))
        absolute["kvstore"]["path"] = str(directory / name)
        ts.open(absolute, create=True, open=True).result().write(value).result()
        specs[path] = spec
    state = {
        "version": 3,
        "optimizer": {
            "target": traverse_util.unflatten_dict(specs, sep="/"),
            "state": {"step": np.int32(1000)},
        },
    }
    (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(state))


def test_t5x_tensorstore_layout_roundtrip(tmp_path):
    model = t5.T5(T5X_TINY.replace(vocab_size=64))
    params = model.init(jax.random.PRNGKey(3), *t5.dummy_inputs())["params"]
    params = jax.tree_util.tree_map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    _write_tensorstore_checkpoint(params, tmp_path / "checkpoint_1000")
    loaded = checkpoints.load_t5x(tmp_path / "checkpoint_1000", T5X_TINY.replace(vocab_size=64))
    a, b = _flat(params), _flat(loaded)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_export_then_load_is_bitwise_exact(tmp_path):
    for family in sorted(T5_FAMILIES):
        make_hf_t5(tmp_path / family, **T5_FAMILIES[family])
        config, params = checkpoints.load_hf_t5(tmp_path / family)
        checkpoints.export_hf_t5(params, config, tmp_path / f"{family}_out")
        config2, params2 = checkpoints.load_hf_t5(tmp_path / f"{family}_out")
        assert config2 == config
        a, b = _flat(params), _flat(params2)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_sharded_index_and_bin_files_load_identically(tmp_path):
    hf = make_hf_t5(tmp_path / "single", **T5_FAMILIES["t5_v1_1"])
    _, ref = checkpoints.load_hf_t5(tmp_path / "single")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    for variant in ("sharded", "bin"):
        _, params = checkpoints.load_hf_t5(tmp_path / variant)
        a, b = _flat(ref), _flat(params)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{variant}: {k}")


def test_bfloat16_safetensors_load(tmp_path):
    hf = make_hf_t5(tmp_path / "f32", **T5_FAMILIES["t5_v1_1"])
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    _, p32 = checkpoints.load_hf_t5(tmp_path / "f32")
    _, p16 = checkpoints.load_hf_t5(tmp_path / "bf16")
    a, b = _flat(p32), _flat(p16)
    for k in a:
        assert b[k].dtype == np.float32
        # bfloat16 keeps 8 bits of mantissa: relative rounding at most 2**-8.
        np.testing.assert_allclose(b[k], a[k], rtol=2**-8, atol=0)


@pytest.fixture
def hf_dir(tmp_path):
    make_hf_t5(tmp_path, **T5_FAMILIES["t5_v1_1"])
    return tmp_path


def _rewrite(directory, edit):
    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(hf_dir):
    _rewrite(hf_dir, lambda t: t.pop("decoder.block.1.layer.2.DenseReluDense.wo.weight"))
    with pytest.raises(checkpoints.CheckpointError) as e:
        checkpoints.load_hf_t5(hf_dir)
    msg = str(e.value)
    assert "missing tensor for decoder/layers_1/mlp/wo/kernel (expected shape (36, 20))" in msg
    assert str(hf_dir) in msg


def test_unexpected_tensor_is_named(hf_dir):
    _rewrite(
        hf_dir,
        lambda t: t.update({"encoder.block.9.layer.0.layer_norm.weight": np.ones(20, np.float32)}),
    )
    with pytest.raises(
        checkpoints.CheckpointError,
        match=r"unexpected tensor encoder\.block\.9\.layer\.0\.layer_norm\.weight",
    ):
        checkpoints.load_hf_t5(hf_dir)


# Names no T5 tensor has, some cut short where the old parser indexed past the end.
ODD_HF_NAMES = [
    "shared",
    "lm_head",
    "foo",
    "encoder.block",
    "encoder.block.x.layer.0",
    "encoder.block.0.layer.0",
    "decoder.block.0.layer.1.EncDecAttention",
    "encoder.block.0.layer.1.DenseReluDense.wi",
]


@pytest.mark.parametrize("name", ODD_HF_NAMES)
def test_odd_hf_name_is_unknown(name):
    with pytest.raises(KeyError):
        t5_hf.hf_to_t5x_name(T5X_TINY, name)


def test_odd_hf_names_are_listed_as_unexpected(hf_dir):
    _rewrite(hf_dir, lambda t: t.update({n: np.ones(2, np.float32) for n in ODD_HF_NAMES}))
    with pytest.raises(checkpoints.CheckpointError) as e:
        checkpoints.load_hf_t5(hf_dir)
    msg = str(e.value)
    assert f"({len(ODD_HF_NAMES)} problems)" in msg
    for name in ODD_HF_NAMES:
        assert f"unexpected tensor {name} [model.safetensors] in" in msg


@pytest.mark.parametrize("family", sorted(T5_FAMILIES))
def test_name_table_matches_hf_state_dict(tmp_path, family):
    """Every HF tensor name maps to one of our params (or is a tied copy), both ways."""
    hf = make_hf_t5(tmp_path, **T5_FAMILIES[family])
    config = t5_config.from_hf_config(hf.config.to_dict())
    hf_shapes = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    ours = checkpoints.abstract_param_shapes(
        lambda: t5.T5(config).init(jax.random.PRNGKey(0), *t5.dummy_inputs())
    )
    reached = {}
    for name, shape in hf_shapes.items():
        mapped = t5_hf.hf_to_t5x_name(config, name)
        if mapped is None:  # A tied copy of the embedding.
            assert hf_shapes[name] == hf_shapes["shared.weight"], name
            continue
        path, transpose = mapped
        assert path not in reached, (name, reached.get(path))
        reached[path] = name
        assert ours[path] == (shape[::-1] if transpose else shape), name
        assert t5_hf.t5x_to_hf_names(config, path)[0] == (name, transpose)
    assert set(reached) == set(ours)
    tied = {n for path in ours for n, _ in t5_hf.t5x_to_hf_names(config, path)}
    assert tied == set(hf_shapes)


def test_misshaped_tensor_is_named(hf_dir):
    # HF [N*H, D] = [18, 20]; one head dimension short.
    bad = {"encoder.block.0.layer.0.SelfAttention.q.weight": np.ones((17, 20), np.float32)}
    _rewrite(hf_dir, lambda t: t.update(bad))
    with pytest.raises(checkpoints.CheckpointError) as e:
        checkpoints.load_hf_t5(hf_dir)
    msg = str(e.value)
    assert "encoder/layers_0/attention/query/kernel: expected shape (20, 18), found (20, 17)" in msg
    assert "SelfAttention.q.weight [model.safetensors]" in msg
    assert "1 problems" in msg


def test_missing_files_are_named(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no config.json"):
        checkpoints.load_hf_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(t5_config.to_hf_config(T5X_TINY)))
    with pytest.raises(checkpoints.CheckpointError, match="expected model.safetensors"):
        checkpoints.load_hf_t5(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="no T5X checkpoint file"):
        checkpoints.load_t5x(tmp_path / "checkpoint_5", T5X_TINY)
    (tmp_path / "ckpt").write_bytes(msgpack.packb({"foo": 1}))
    with pytest.raises(checkpoints.CheckpointError, match="'optimizer/target' or 'target'"):
        checkpoints.load_t5x(tmp_path / "ckpt", T5X_TINY)


def test_orbax_restores_into_shardings(tmp_path):
    config = T5X_TINY.replace(vocab_size=64, num_heads=4, head_dim=4, mlp_dim=32)
    mesh = partitioning.make_mesh(2, 4)
    rules = partitioning.standard_logical_axis_rules()
    params, shardings = partitioning.init_sharded(
        lambda rng: t5.T5(config).init(rng, *t5.dummy_inputs()), jax.random.PRNGKey(0), mesh, rules
    )
    checkpoints.save_params(params, tmp_path / "params")
    restored = checkpoints.restore_params(tmp_path / "params", params)
    for (k, a), (_, b) in zip(_flat(params).items(), _flat(restored).items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
    q = restored["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert q.sharding == shardings["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "model")


@pytest.mark.parametrize("transpose", [False, True])
def test_streamed_placement_equals_whole_read(tmp_path, monkeypatch, transpose):
    """The accelerator path (parts written into a donated buffer) on a CPU device.

    On CPU `_place` adopts the host buffer instead, so this path is driven
    directly; the parts are made small so the last one overlaps.
    """
    monkeypatch.setattr(placing, "CHUNK_BYTES", 1000)
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((37, 23)).astype(ml_dtypes.bfloat16)
    save_file({"w": weight}, str(tmp_path / "model.safetensors"))
    source = checkpoints.hf_source(checkpoints.HFTensors(tmp_path), "w", transpose)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[3])
    got = placing._stream_to_device(source, device, np.dtype(np.float32))
    want = weight.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(got), want.T if transpose else want)
    assert got.sharding == device


_MEMORY_SCRIPT = r"""
import resource, sys
from jaxrobust import checkpoints
checkpoints.load_hf_t5(sys.argv[2])  # warm-up: imports, tracing, allocator pools

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

base = rss_kib("VmRSS:")
# Reset the high-water mark so VmHWM measures this load alone.
open("/proc/self/clear_refs", "w").write("5")
config, params = checkpoints.load_hf_t5(sys.argv[1])
print(base, rss_kib("VmHWM:"))
"""


@pytest.mark.heavy
def test_peak_host_memory_of_hf_load(tmp_path):
    """Loading a checkpoint of S bytes peaks below 1.3 x S above the baseline.

    Measured: 1.04 x for this 294 MiB file. On CPU each tensor is read once into
    an aligned host buffer that XLA adopts as the device buffer; before that,
    copying into XLA's own buffers (and a first compilation for the streamed
    parts) gave 1.25-1.35 x.
    """
    make_hf_t5(
        tmp_path / "big",
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=1024,
        num_layers=8,  # flan-t5-small whole: the embedding is 21% of the file.
        num_heads=6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    make_hf_t5(tmp_path / "small", **T5_FAMILIES["t5_v1_1"])
    size = (tmp_path / "big" / "model.safetensors").stat().st_size
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "big"), str(tmp_path / "small")],
        capture_output=True,
        text=True,
        check=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    base_kib, peak_kib = map(int, out.stdout.split()[-2:])
    extra = (peak_kib - base_kib) * 1024
    print(
        f"checkpoint {size / 2**20:.1f} MiB; peak above baseline {extra / 2**20:.1f} MiB "
        f"= {extra / size:.2f} x"
    )
    assert extra < 1.3 * size


# ---------------------------------------------------------------------------
# Damaged files: a CheckpointError naming the file and the problem, never a load.
# ---------------------------------------------------------------------------


def _cut(n):
    return lambda p: p.write_bytes(p.read_bytes()[:-n])


def _header_of(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _with_header(edit):
    """Rewrites the safetensors header after `edit(header)`, data unchanged."""

    def damage(p):
        header, data = _header_of(p)
        edit(header)
        text = json.dumps(header).encode()
        p.write_bytes(struct.pack("<Q", len(text)) + text + data)

    return damage


def _first(header):
    return next(k for k in sorted(header) if k != "__metadata__")


def _overlap(header):
    a, b = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["shape"])[-2:]
    header[b]["data_offsets"] = header[a]["data_offsets"]
    header[b]["shape"] = header[a]["shape"]


SAFETENSORS_DAMAGE = {
    # (damage to model.safetensors, what the message says)
    "cut 20 kB": (_cut(20_000), r"damaged safetensors file: truncated: .* \(\d+ missing\)"),
    "cut to the header": (
        lambda p: p.write_bytes(p.read_bytes()[: 8 + _hlen(p)]),
        "truncated",
    ),
    "empty": (lambda p: p.write_bytes(b""), "0 bytes, too short for a safetensors file"),
    "garbage": (lambda p: p.write_bytes(b"\xff" * 64), "header length 18446744073709551615"),
    "header longer than the file": (
        lambda p: p.write_bytes(struct.pack("<Q", 10**6) + p.read_bytes()[8:]),
        r"header length 1000000 exceeds the \d+ bytes after it",
    ),
    "header not JSON": (
        lambda p: p.write_bytes(struct.pack("<Q", 5) + b"{abc}"),
        "the 5-byte header is not JSON",
    ),
    "header not an object": (
        lambda p: p.write_bytes(struct.pack("<Q", 2) + b"[]"),
        "header is a JSON list",
    ),
    "unknown dtype": (
        _with_header(lambda h: h[_first(h)].update(dtype="F8_E4M3")),
        "dtype 'F8_E4M3' is not one of",
    ),
    "bytes != dtype x shape": (
        _with_header(lambda h: h[_first(h)].update(shape=[1, 1])),
        r"bytes, expected 4 for \[1, 1\] F32",
    ),
    "bad offsets": (
        _with_header(lambda h: h[_first(h)].update(data_offsets=[10, 2])),
        r"data_offsets \[10, 2\] is not \[start, end\]",
    ),
    "overlapping tensors": (_with_header(_overlap), "overlap"),
}


def _hlen(p):
    return struct.unpack("<Q", p.read_bytes()[:8])[0]


@pytest.mark.parametrize("case", sorted(SAFETENSORS_DAMAGE))
def test_damaged_safetensors_is_refused_by_name(hf_dir, case):
    """Before: a cut file loaded (missing bytes left as uninitialised memory); the
    others raised struct.error, OverflowError, UnicodeDecodeError or JSONDecodeError."""
    damage, message = SAFETENSORS_DAMAGE[case]
    damage(hf_dir / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match=message) as e:
        checkpoints.load_hf_t5(hf_dir)
    assert str(e.value).startswith(f"{hf_dir / 'model.safetensors'}: ")


def test_file_cut_while_loading_is_a_short_read(hf_dir):
    """Every read's length is checked: a file truncated after its header was read."""
    f = checkpoints.SafetensorsFile(hf_dir / "model.safetensors")
    header, _ = _header_of(hf_dir / "model.safetensors")
    name = max(f.keys(), key=lambda k: header[k]["data_offsets"][1])  # The file's last tensor.
    _cut(100)(hf_dir / "model.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match=rf"tensor {name}: read \d+ of \d+ bytes"):
        f.get(name)


CONFIG_DAMAGE = {
    "not JSON": ("{not json", "config.json: not a JSON model config"),
    "not an object": ("[1, 2]", "config.json: a JSON list, not an object"),
    "not UTF-8": (b"\xff\xfe{", "config.json: not a JSON model config"),
    "a field missing": (json.dumps({"vocab_size": 3}), "config.json: no 'd_model' field"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_DAMAGE))
def test_bad_config_json_is_named(hf_dir, case):
    text, message = CONFIG_DAMAGE[case]
    path = hf_dir / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(checkpoints.CheckpointError, match=message) as e:
        checkpoints.load_hf_t5(hf_dir)
    assert str(path) in str(e.value)


@pytest.fixture
def sharded_dir(tmp_path):
    hf = make_hf_t5(tmp_path / "single", **T5_FAMILIES["t5_v1_1"])
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    return tmp_path / "sharded"


def test_index_naming_a_missing_shard_is_refused(sharded_dir):
    index = json.loads((sharded_dir / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    (sharded_dir / shard).unlink()
    with pytest.raises(
        checkpoints.CheckpointError, match=f"names shard files that are missing: {shard}"
    ):
        checkpoints.load_hf_t5(sharded_dir)


def test_index_disagreeing_with_its_shards_is_refused(sharded_dir):
    path = sharded_dir / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    index["weight_map"]["shared.weight"] = next(
        s for s in shards if s != index["weight_map"]["shared.weight"]
    )
    path.write_text(json.dumps(index))
    with pytest.raises(checkpoints.CheckpointError, match="puts tensor shared.weight in"):
        checkpoints.load_hf_t5(sharded_dir)
    path.write_text("{")
    with pytest.raises(checkpoints.CheckpointError, match="not a JSON shard index"):
        checkpoints.load_hf_t5(sharded_dir)


def test_truncated_pytorch_bin_is_refused(tmp_path):
    hf = make_hf_t5(tmp_path / "src", **T5_FAMILIES["t5_v1_1"])
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text((tmp_path / "src" / "config.json").read_text())
    torch.save(hf.state_dict(), d / "pytorch_model.bin")
    _cut(20_000)(d / "pytorch_model.bin")
    with pytest.raises(checkpoints.CheckpointError, match="cannot read as a PyTorch checkpoint"):
        checkpoints.load_hf_t5(d)


# ---------------------------------------------------------------------------
# The weights digest.
# ---------------------------------------------------------------------------


def _digest(directory) -> str:
    d = checkpoints.WeightsDigest()
    checkpoints.load_hf_t5(directory, digest=d)
    return d.hexdigest()


def _expected_digest(directory) -> str:
    """The digest's definition, computed from `safetensors`' own reader over the
    tensors the model is built from (tied copies are not read)."""
    import hashlib

    config = t5_config.from_hf_config(json.loads((directory / "config.json").read_text()))
    tensors = load_file(directory / "model.safetensors")
    lines = []
    for name in sorted(tensors):
        if t5_hf.hf_to_t5x_name(config, name) is None:
            continue
        t = tensors[name]
        sha = hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest()
        lines.append(f"{name}\t{t.dtype.name}\t{list(t.shape)}\t{sha}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def test_weights_digest_is_of_the_bytes_read_in_parts(tmp_path, monkeypatch):
    make_hf_t5(tmp_path / "a", **T5_FAMILIES["t5_v1_1"])
    want = _expected_digest(tmp_path / "a")
    assert _digest(tmp_path / "a") == want
    monkeypatch.setattr(placing, "CHUNK_BYTES", 1000)  # Every large tensor in several parts.
    assert _digest(tmp_path / "a") == want


def test_weights_digest_of_overlapping_streamed_parts(tmp_path, monkeypatch):
    """The accelerator path's last part overlaps the one before: hashed once."""
    import hashlib

    monkeypatch.setattr(placing, "CHUNK_BYTES", 1000)
    weight = np.random.default_rng(0).standard_normal((37, 23)).astype(np.float32)
    save_file({"w": weight}, str(tmp_path / "model.safetensors"))
    d = checkpoints.WeightsDigest()
    source = checkpoints.hf_source(checkpoints.HFTensors(tmp_path, d), "w", True)
    placing._stream_to_device(
        source, jax.sharding.SingleDeviceSharding(jax.devices()[0]), np.dtype(np.float32)
    )
    sha = hashlib.sha256(weight.tobytes()).hexdigest()
    line = f"w\tfloat32\t[37, 23]\t{sha}\n"
    assert d.hexdigest() == "sha256:" + hashlib.sha256(line.encode()).hexdigest()


def _save_bin(hf, config_from, directory):
    directory.mkdir()
    (directory / "config.json").write_text((config_from / "config.json").read_text())
    torch.save(hf.state_dict(), directory / "pytorch_model.bin")


def test_weights_digest_follows_content_not_layout(tmp_path):
    """One file, shards and a .bin of the same weights agree; one changed value does not."""
    hf = make_hf_t5(tmp_path / "single", **T5_FAMILIES["t5_v1_1"])
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    _save_bin(hf, tmp_path / "single", tmp_path / "bin")
    digests = {v: _digest(tmp_path / v) for v in ("single", "sharded", "bin")}
    assert len(set(digests.values())) == 1, digests

    with torch.no_grad():
        wo = hf.decoder.block[1].layer[2].DenseReluDense.wo.weight
        value = wo[3, 4].clone()
        wo[3, 4] += 1e-3
        hf.save_pretrained(tmp_path / "changed")
        wo[3, 4] = value
    assert _digest(tmp_path / "changed") != digests["single"]
    hf.save_pretrained(tmp_path / "restored")
    assert _digest(tmp_path / "restored") == digests["single"]

    # bfloat16: the .bin's tensors are hashed as the same bf16 bits as the file's.
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    _save_bin(hf, tmp_path / "bf16", tmp_path / "bf16_bin")
    assert _digest(tmp_path / "bf16") == _digest(tmp_path / "bf16_bin") != digests["single"]


# ---------------------------------------------------------------------------
# Checkpoints from where users keep them: T5X through ModelSpec and the CLI, hub ids,
# object stores (issue 15).
# ---------------------------------------------------------------------------

T5X_CONFIG_JSON = pathlib.Path(__file__).parent / "fixtures/t5x/test_t5_tiny_config.json"


def _spec_params(spec):
    from jaxrobust import inference

    model = inference.load_model(spec, partitioning.make_mesh())
    return model, _flat(model.params)


def test_t5x_checkpoint_through_model_spec_and_cli(shared_data_dir, tmp_path, capsys):
    """T5X's own test checkpoint through `ModelSpec` (config given as a config.json, or
    beside the checkpoint) and `score --checkpoint`, with the tensors `load_t5x` reads."""
    from jaxrobust import inference, main

    path = shared_data_dir / "t5x" / "test_t5_tiny.checkpoint_0"
    want = _flat(checkpoints.load_t5x(path, T5X_TINY))
    spec = inference.ModelSpec(
        name="t5x", checkpoint=str(path), preset=str(T5X_CONFIG_JSON), tokenizer="byte"
    )
    model, got = _spec_params(spec)
    assert model.config == T5X_TINY and model.weights_digest.startswith("sha256:")
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # The config beside the checkpoint instead of a preset.
    (tmp_path / "ckpt").mkdir()
    copy = tmp_path / "ckpt" / path.name
    copy.write_bytes(path.read_bytes())
    (tmp_path / "ckpt" / "config.json").write_bytes(T5X_CONFIG_JSON.read_bytes())
    beside, _ = _spec_params(spec.__class__(name="t5x", checkpoint=str(copy), tokenizer="byte"))
    assert beside.weights_digest == model.weights_digest  # Same tensors, same digest.
    assert main.main(["score", "--checkpoint", str(copy), "--tokenizer", "byte"]) == 0
    assert f"checkpoint {copy}" in capsys.readouterr().out
    # What is missing is named.
    with pytest.raises(checkpoints.CheckpointError, match="holds no model config"):
        _spec_params(spec.__class__(name="t5x", checkpoint=str(path), tokenizer="byte"))
    with pytest.raises(ValueError, match="holds no tokenizer"):
        _spec_params(spec.__class__(name="t5x", checkpoint=str(path), preset="tiny"))
    with pytest.raises(ValueError, match="T5X checkpoints are T5's"):
        _spec_params(spec.__class__(name="t5x", family="llama", checkpoint=str(path)))


def test_t5x_tensorstore_checkpoint_through_the_eval_command(tmp_path):
    """A tensorstore-layout T5X checkpoint of the `tiny` preset's shapes evaluated by the
    `eval` command (tiny.gin: preset 'tiny', byte tokenizer); the vocabulary size is the
    checkpoint's (300 rows here, not the tokenizer's 259)."""
    from jaxrobust import inference, main
    from jaxrobust.storage import records

    sys.path.insert(0, str(pathlib.Path(__file__).parent / "fixtures"))
    import eval_tasks  # noqa: F401  (jr:toyqa:qa)

    config = t5_config.get_preset("tiny", vocab_size=300)
    params = t5.T5(config).init(jax.random.PRNGKey(5), *t5.dummy_inputs())["params"]
    params = jax.tree_util.tree_map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    ckpt = tmp_path / "checkpoint_7"
    _write_tensorstore_checkpoint(params, ckpt)
    spec = inference.ModelSpec(name="ts", preset="tiny", checkpoint=str(ckpt), tokenizer="byte")
    model, got = _spec_params(spec)
    assert model.config.vocab_size == 300
    for k, v in _flat(params).items():
        np.testing.assert_array_equal(got[k], v)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa:toyqa_o1']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
        f"--gin.TINY_CHECKPOINT='{ckpt}'",
    ]
    assert main.main(argv) == 0
    header = records.read_records(out / "records/tiny-t5/jr__toyqa__qa__toyqa_o1.jsonl").header
    assert header["config"]["weights_digest"] == model.weights_digest


def _hub_cache(root: pathlib.Path, repo_id: str, source: pathlib.Path, rev: str) -> None:
    """`source`'s files laid out as huggingface_hub caches a snapshot: blobs named by
    content hash, snapshots/<rev>/ symlinks to them, refs/main naming the revision."""
    import hashlib

    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(pathlib.Path("../../blobs") / blob.name)


def test_hub_id_resolves_through_the_huggingface_hub_cache_offline(tmp_path):
    """`--checkpoint org/name` (no such local folder) is found in huggingface_hub's cache
    with HF_HUB_OFFLINE=1; an id not in the cache is a CheckpointError naming the cache."""
    from tokenizers import SentencePieceUnigramTokenizer

    from jaxrobust import inference

    src = tmp_path / "src"
    config = t5_config.get_preset("tiny", vocab_size=96)
    params = t5.T5(config).init(jax.random.PRNGKey(2), *t5.dummy_inputs())["params"]
    params = jax.tree_util.tree_map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    checkpoints.export_hf_t5(params, config, src)
    spm = SentencePieceUnigramTokenizer()
    words = ["is paris the capital of france", "smoke came from a fire", "yes no true false"]
    spm.train_from_iterator(
        words * 20, vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=spm, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(src)
    cache = tmp_path / "hf_home" / "hub"
    _hub_cache(cache, "jaxrobust-test/tiny-t5", src, "0123456789abcdef0123456789abcdef01234567")
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")},
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "JAX_PLATFORMS": "cpu",
    }
    score = [sys.executable, "-m", "jaxrobust.main", "score"]
    cwd = tmp_path  # No folder jaxrobust-test/ here: the id is not a local path.
    proc = subprocess.run(
        [*score, "--checkpoint", "jaxrobust-test/tiny-t5"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint jaxrobust-test/tiny-t5" in proc.stdout
    # The same weights as the folder itself (the cache's symlinks read as files).
    want = inference.load_model(
        inference.ModelSpec(name="src", checkpoint=str(src)), partitioning.make_mesh()
    )
    code = (
        "from jaxrobust import inference; from jaxrobust.parallel import partitioning; "
        "m = inference.load_model(inference.ModelSpec(name='hub', "
        "checkpoint='jaxrobust-test/tiny-t5'), partitioning.make_mesh()); "
        "print(m.weights_digest, m.tokenizer.vocab_size, inference.make_tokenizer("
        "inference.ModelSpec(name='t', tokenizer='jaxrobust-test/tiny-t5')).vocab_size)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    vocab = str(want.tokenizer.vocab_size)
    assert proc.stdout.split() == [want.weights_digest, vocab, vocab]  # Tokenizer by id too.
    proc = subprocess.run(
        [*score, "--checkpoint", "jaxrobust-test/absent"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "jaxrobust-test/absent: no such local folder" in proc.stderr
    assert str(cache) in proc.stderr and "HF_HUB_OFFLINE is set" in proc.stderr
