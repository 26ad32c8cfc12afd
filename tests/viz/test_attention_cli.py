"""`tformer attention` on tiny model directories: the files it writes and its one-line errors."""

import shutil

import pytest

from tformer.cli import main


def run(capsys, *args):
    code = main(["attention", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_decoder_writes_viewer_pngs_and_statistics(model_dirs, capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "--model",
        str(model_dirs["decoder"]),
        "--text",
        "The quick fox",
        "--layers",
        "1",
        "--heads",
        "0,3",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert sorted(p.name for p in (out / "heads").iterdir()) == [
        "self_layer1_head0.png",
        "self_layer1_head3.png",
    ]
    assert (out / "self_grid.png").is_file() and (out / "stats.png").is_file()
    assert (out / "attention.html").read_text().startswith("<!DOCTYPE html>")
    assert len((out / "stats.tsv").read_text().splitlines()) == 3  # header + two heads
    assert "wrote" in stdout and "entropy" in stdout


def test_encoder_decoder_cross_attention_and_file_statistics(model_dirs, capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 10)
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "--model",
        str(model_dirs["encoder_decoder"]),
        "--text",
        "The fox",
        "--target",
        "le renard",
        "--out",
        str(out),
        "--no-head-pngs",
        "--stats-file",
        str(corpus),
    )
    assert code == 0, err
    assert {p.name for p in out.glob("*_grid.png")} == {
        "encoder_grid.png",
        "decoder_grid.png",
        "cross_grid.png",
    }
    assert not (out / "heads").exists()
    rows = (out / "stats.tsv").read_text().splitlines()[1:]
    assert len(rows) == 8 and all(r.startswith("encoder\t") for r in rows)  # the file is read by the encoder
    assert "target: le renard" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "5"], "layer 5 is out of range: the decoder has 2 layers (0..1)"),
        (["--heads", "0,9"], "head 9 is out of range: the decoder has 4 heads (0..3)"),
        (["--text", "fox " * 40], "longer than the model's context of 48 tokens"),
        (["--target", "x"], "--target applies to encoder-decoder models"),
    ],
)
def test_user_mistakes_are_one_line_errors(model_dirs, capsys, tmp_path, args, message):
    base = ["--model", str(model_dirs["decoder"]), "--out", str(tmp_path)]
    if "--text" not in args:
        base += ["--text", "The fox"]
    code, _, err = run(capsys, *base, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_model_without_tokenizer(model_dirs, capsys, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dirs["decoder"] / name, bare / name)
    code, _, err = run(capsys, "--model", str(bare), "--text", "x", "--out", str(tmp_path / "o"))
    assert code == 2 and "has no tokenizer" in err and "--tokenizer" in err


def test_bad_index_list_is_an_argparse_error(model_dirs, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "attention",
                "--model",
                str(model_dirs["decoder"]),
                "--text",
                "x",
                "--out",
                str(tmp_path),
                "--layers",
                "a",
            ]
        )
    assert (
        e.value.code == 2 and "expected comma-separated integers like 0,3; got 'a'" in capsys.readouterr().err
    )
