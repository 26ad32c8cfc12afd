"""Vision Transformer on scikit-learn's 8x8 digits: test accuracy and wall time of one `tformer train` command.

    python benchmarks/results_vit_digits.py [--threads 2] [--write-results]

The 1,797 digits are split by a seed-0 permutation: 20% held out (359 images) as the test set, which the
run evaluates at the end. Model: the ``vit-tiny`` preset fitted to the data (8x8 pixels, 1 channel, 2x2
patches: 16 patches + [CLS], 4 layers of width 64, 10 labels). Target: >= 97% test accuracy in <= 3 minutes on
2 CPU cores. Needs scikit-learn (``pip install 'tformer[results]'``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import table  # noqa: E402
from results import machine, package_dir, run, shown, tformer_command, write_section  # noqa: E402

SETTINGS = [
    "batch_size=64",
    "val_fraction=0.2",
    "lr=1e-3",
    "min_lr=1e-4",
    "warmup_steps=100",
    "eval_every=500",
    "seed=0",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--out", type=Path, default=Path("runs/vit-digits"))
    p.add_argument("--write-results", action="store_true", help="write the result into RESULTS.md")
    args = p.parse_args()
    package_dir("sklearn")
    cmd = tformer_command(
        "train", "--preset", "vit-tiny", "--task", "image-classify", "--data", "digits", "--out", args.out,
        "--overwrite", "--max-steps", args.max_steps, "--no-progress",
        *[a for s in SETTINGS for a in ("--set", s)], "--set", f"num_threads={args.threads}",
    )  # fmt: skip
    wall, stdout, _ = run(cmd, args.threads)
    accuracy = float(re.search(r"accuracy ([\d.]+)", stdout).group(1))
    table(
        "ViT on digits (20% test split)",
        ["test accuracy", "wall time"],
        [[f"{100 * accuracy:.2f}%", f"{wall:.0f} s"]],
    )
    if args.write_results:
        write_section(
            "results_vit_digits",
            "\n".join(
                [
                    "## Vision Transformer on scikit-learn's 8x8 digits",
                    "",
                    f"`python benchmarks/results_vit_digits.py` on {machine(args.threads)}.",
                    "",
                    "| test accuracy (359 images) | wall time (whole command) |",
                    "|---|---|",
                    f"| {100 * accuracy:.2f}% | {wall:.0f} s |",
                    "",
                    "```",
                    shown(cmd),
                    "```",
                ]
            ),
        )


if __name__ == "__main__":
    main()
