"""The numpy-only reader of TensorFlow V2 checkpoints (longbird.conversion.tf_checkpoint).

The fixtures in tests/fixtures/tf_checkpoint were written by TensorFlow 2.15.1 (see the
README there); the expected values in the .npz files are what TensorFlow's own reader
returned. TensorFlow is not needed to run these tests.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from longbird.conversion import tf_checkpoint as tfc
from longbird.conversion.tf_checkpoint import list_tf_checkpoint, load_tf_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "tf_checkpoint"
PREFIXES = {"tf1": FIXTURES / "tf1" / "model.ckpt", "tf2": FIXTURES / "tf2" / "ckpt-1"}


def _expected(kind: str) -> tuple[dict[str, np.ndarray], set[str]]:
    """Expected {name: value} and the names of the bfloat16 tensors (stored as float32)."""
    z = np.load(FIXTURES / f"expected_{kind}.npz")
    out: dict[str, np.ndarray] = {}
    for key in z.files:
        if key == "__bfloat16__":
            continue
        if key.startswith("str::"):
            name, part = key[len("str::") :].rsplit("::", 1)
            if part == "lengths":
                lengths, data = z[key], z[f"str::{name}::data"].tobytes()
                flat, pos = [], 0
                for n in lengths.reshape(-1).tolist():
                    flat.append(data[pos : pos + n])
                    pos += n
                arr = np.empty(len(flat), dtype=object)
                arr[:] = flat
                out[name] = arr.reshape(lengths.shape)
            continue
        out[key] = z[key]
    return out, set(z["__bfloat16__"].tolist())


def _copy(kind: str, tmp_path: Path) -> Path:
    src = PREFIXES[kind]
    dst = tmp_path / kind
    shutil.copytree(src.parent, dst)
    return dst / src.name


# --- crc32c ------------------------------------------------------------------------------


def test_crc32c_known_values_and_vectorised_path():
    assert tfc.crc32c(b"") == 0
    assert tfc.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert tfc.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4 test vectors
    assert tfc.crc32c(b"\xff" * 32) == 0x62A8AB43
    rng = np.random.default_rng(0)
    for n in (255, 1023, 1024, 1029, 4099, 70_001, 300_003, 1_000_003):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        bytewise = tfc._update_bytewise(0xFFFFFFFF, data.tobytes()) ^ 0xFFFFFFFF
        assert tfc.crc32c(data) == bytewise, n
        assert tfc.crc32c(data[n // 3 :], tfc.crc32c(data[: n // 3])) == bytewise, n  # extension


def test_mask_roundtrip():
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert tfc._unmask(tfc._mask(crc)) == crc


# --- values ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tf1", "tf2"])
def test_every_tensor_matches_tensorflow(kind):
    expected, bf16 = _expected(kind)
    listed = list_tf_checkpoint(PREFIXES[kind])
    loaded = load_tf_checkpoint(PREFIXES[kind])
    assert list(listed) == sorted(expected)  # index order is sorted byte order
    assert list(loaded) == list(listed)
    for name, want in expected.items():
        got = loaded[name]
        assert listed[name] == (got.dtype, got.shape), name
        assert got.shape == want.shape, name
        if want.dtype == object:
            assert got.dtype == object and got.tolist() == want.tolist(), name
            continue
        assert got.dtype == want.dtype, name  # bfloat16 -> float32, like the npz
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.writeable and got.flags.c_contiguous, name
    assert len(bf16) == 2 and all(listed[n][0] == np.float32 for n in bf16)


@pytest.mark.parametrize("kind", ["tf1", "tf2"])
def test_fixture_covers_the_interesting_cases(kind):
    listed = list_tf_checkpoint(PREFIXES[kind])
    assert len(listed) >= 50
    dtypes = {str(d) for d, _ in listed.values()}
    assert {"float32", "float16", "float64", "int32", "int64", "int8", "uint8", "bool", "object"} <= dtypes
    shapes = [s for _, s in listed.values()]
    assert () in shapes and (0, 4) in shapes and (2, 3, 5) in shapes
    assert any(name.count("/") >= 3 for name in listed)
    if kind == "tf2":
        assert "_CHECKPOINTABLE_OBJECT_GRAPH" in listed
        assert all(n.endswith("/.ATTRIBUTES/VARIABLE_VALUE") for n in listed if n.startswith("model/"))


def _data_blocks(index: Path) -> list[bytes]:
    """The data blocks of a table, via the footer's index-block handle."""
    data, path = index.read_bytes(), str(index)
    footer, pos = data[-48:], 0
    for _ in range(2):  # metaindex handle
        _, pos = tfc._varint(footer, pos)
    start = pos
    for _ in range(2):  # index handle
        _, pos = tfc._varint(footer, pos)
    index_block = tfc._read_block(data, footer[start:pos], path)
    return [tfc._read_block(data, handle, path) for _, handle in tfc._block_entries(index_block, path)]


def test_index_block_has_several_restart_points_and_tf1_has_several_shards():
    index = Path(str(PREFIXES["tf1"]) + ".index")
    (block,) = _data_blocks(index)  # TF's 256 KiB blocks: one for a small checkpoint
    assert int.from_bytes(block[-4:], "little") >= 3  # a restart point every 16 entries
    assert len(tfc._block_entries(block, str(index))) == 51 == len(tfc._read_table(str(index)))  # header + 50
    assert len(list(PREFIXES["tf1"].parent.glob("model.ckpt.data-*-of-00003"))) == 3


# --- prefix forms, names -----------------------------------------------------------------


def test_directory_index_file_and_pathlike_forms_of_prefix():
    by_prefix = load_tf_checkpoint(str(PREFIXES["tf2"]))
    for form in (PREFIXES["tf2"].parent, str(PREFIXES["tf2"].parent), Path(str(PREFIXES["tf2"]) + ".index")):
        other = load_tf_checkpoint(form)
        assert list(other) == list(by_prefix)
        for name in by_prefix:
            np.testing.assert_array_equal(other[name], by_prefix[name])
    assert list_tf_checkpoint(PREFIXES["tf1"].parent) == list_tf_checkpoint(PREFIXES["tf1"])


def test_names_subset_order_and_missing_name():
    names = ["scalar_f32", "encoder/layer_03/attention/kernel", "bf16/weights"]
    out = load_tf_checkpoint(PREFIXES["tf1"], names=names)
    assert list(out) == names
    assert out["scalar_f32"].shape == () and out["scalar_f32"] == np.float32(3.25)
    assert list(load_tf_checkpoint(PREFIXES["tf1"], names="global_step")) == ["global_step"]
    with pytest.raises(KeyError, match="no/such/var"):
        load_tf_checkpoint(PREFIXES["tf1"], names=["scalar_f32", "no/such/var"])


# --- errors ------------------------------------------------------------------------------


def test_corrupted_data_byte_is_caught_by_crc(tmp_path):
    prefix = _copy("tf1", tmp_path)
    name = "encoder/layer_05/attention/kernel"
    entry = tfc._Bundle(prefix).entries[name]
    data_file = Path(f"{prefix}.data-{entry.shard_id:05d}-of-00003")
    raw = bytearray(data_file.read_bytes())
    raw[entry.offset + 17] ^= 0x40
    data_file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_tf_checkpoint(prefix)
    assert name in str(info.value) and data_file.name in str(info.value)
    # Without verification the (corrupt) value loads; other tensors are unaffected.
    good = load_tf_checkpoint(PREFIXES["tf1"], names=[name])[name]
    bad = load_tf_checkpoint(prefix, names=[name], verify=False)[name]
    assert (bad != good).sum() == 1
    np.testing.assert_array_equal(load_tf_checkpoint(prefix, names=["scalar_f32"])["scalar_f32"], 3.25)


def test_corrupted_string_byte_is_caught_by_crc(tmp_path):
    prefix = _copy("tf1", tmp_path)
    entry = tfc._Bundle(prefix).entries["strings/vocab"]
    data_file = Path(f"{prefix}.data-{entry.shard_id:05d}-of-00003")
    raw = bytearray(data_file.read_bytes())
    raw[entry.offset + entry.size - 2] ^= 0x01  # inside the string bytes
    data_file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch.*strings/vocab"):
        load_tf_checkpoint(prefix, names=["strings/vocab"])


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.index.*expected a TensorFlow V2 checkpoint prefix"):
        load_tf_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no '\*\.index' file in directory"):
        list_tf_checkpoint(tmp_path)
    prefix = _copy("tf1", tmp_path)
    missing = Path(f"{prefix}.data-00001-of-00003")
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.ckpt\.data-00001-of-00003"):
        load_tf_checkpoint(prefix)
    assert len(list_tf_checkpoint(prefix)) == 50  # listing needs only the index


def test_ambiguous_directory_and_non_checkpoint_files(tmp_path):
    prefix = _copy("tf1", tmp_path)
    shutil.copy(f"{prefix}.index", f"{prefix}-2.index")
    with pytest.raises(ValueError, match="holds 2 checkpoints"):
        list_tf_checkpoint(prefix.parent)
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(ValueError, match="junk.*is a file"):
        list_tf_checkpoint(junk)
    Path(str(junk) + ".index").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"junk\.index.*bad table magic"):
        list_tf_checkpoint(junk)


def test_partitioned_variable_is_listed_but_not_loaded():
    prefix = FIXTURES / "partitioned" / "model.ckpt"
    expected, _ = _expected("partitioned")
    listed = list_tf_checkpoint(prefix)
    assert listed == {"embeddings/table": (np.dtype(np.float32), (6, 3)), "plain/bias": (np.dtype(np.float32), (3,))}
    np.testing.assert_array_equal(
        load_tf_checkpoint(prefix, names=["plain/bias"])["plain/bias"], expected["plain/bias"]
    )
    with pytest.raises(ValueError, match="partitioned.*'embeddings/table'"):
        load_tf_checkpoint(prefix)


# --- index layouts TensorFlow only writes for huge checkpoints -----------------------------


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def _write_table(path: Path, entries: list[tuple[bytes, bytes]], per_block: int, block_type: int = 0) -> None:
    """A LevelDB-format table with `per_block` entries per data block (test-side writer)."""
    out = bytearray()

    def put(contents: bytes, kind: int) -> bytes:
        handle = _varint(len(out)) + _varint(len(contents))
        trailer = bytes([kind])
        out.extend(contents + trailer + struct.pack("<I", tfc._mask(tfc.crc32c(contents + trailer))))
        return handle

    index = []
    for start in range(0, len(entries), per_block):
        chunk = entries[start : start + per_block]
        index.append((chunk[-1][0], put(_block(chunk, restart_interval=3), block_type)))
    meta = put(_block([], 1), 0)
    idx = put(_block(index, 1), 0)
    footer = (meta + idx).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    path.write_bytes(bytes(out) + footer)


def test_multi_block_index(tmp_path):
    prefix = _copy("tf2", tmp_path)
    index = Path(f"{prefix}.index")
    entries = tfc._read_table(str(index))
    _write_table(index, entries, per_block=4)
    assert len(_data_blocks(index)) == 13
    expected = load_tf_checkpoint(PREFIXES["tf2"])
    got = load_tf_checkpoint(prefix)
    assert list(got) == list(expected)
    for name in expected:
        if expected[name].dtype == object:
            assert got[name].tolist() == expected[name].tolist()
        else:
            np.testing.assert_array_equal(got[name], expected[name])


def test_compressed_or_corrupt_index_block(tmp_path):
    prefix = _copy("tf2", tmp_path)
    index = Path(f"{prefix}.index")
    entries = tfc._read_table(str(index))
    _write_table(index, entries, per_block=8, block_type=1)  # flagged snappy
    with pytest.raises(ValueError, match=r"ckpt-1\.index.*compressed.*snappy"):
        list_tf_checkpoint(prefix)
    _write_table(index, entries, per_block=8)
    raw = bytearray(index.read_bytes())
    raw[10] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"ckpt-1\.index.*checksum mismatch"):
        list_tf_checkpoint(prefix)
