"""The data fingerprint `--resume` compares: size + SHA-256 of the content, or of samples for big files."""

import shutil

from tformer.training import fingerprint
from tformer.training.fingerprint import describe_change, file_fingerprint


def test_small_files_are_hashed_whole_and_paths_do_not_matter(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("hello world\n" * 100)
    fp = file_fingerprint(a)
    assert fp["hashed"] == "all" and fp["size"] == 1200
    copy = shutil.copy(a, tmp_path / "b.txt")
    assert describe_change([fp], [file_fingerprint(copy)]) is None
    a.write_text("hello world\n" * 99 + "hello World\n")  # one byte, same size
    change = describe_change([fp], [file_fingerprint(a)])
    assert change is not None and "is not the data the run was trained on" in change
    assert "trained on 1 data file(s), this resume gives 2" in describe_change([fp], [fp, fp])


def test_big_files_are_sampled_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 10)
    monkeypatch.setattr(fingerprint, "SAMPLES", 4)  # bytes 0-9, 330-339, 660-669, 990-999 of 1000
    big = tmp_path / "big.bin"
    data = bytearray(range(256)) * 4
    big.write_bytes(bytes(data[:1001]))
    fp = file_fingerprint(big)
    assert fp["hashed"].startswith("sampled (4 blocks") and fp["size"] == 1001
    data[995] ^= 1  # inside the last block
    big.write_bytes(bytes(data[:1001]))
    assert describe_change([fp], [file_fingerprint(big)]) is not None
    data[995] ^= 1
    data[500] ^= 1  # between the blocks, same size: the documented blind spot of sampling
    big.write_bytes(bytes(data[:1001]))
    assert describe_change([fp], [file_fingerprint(big)]) is None
