"""`tformer merge-lora`: fold a LoRA adapter into its base model and save a plain model directory.

tformer merge-lora --model base-dir --adapter runs/b/adapter --out merged/
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Merge the adapter into the base model and save the merged model; returns the exit code."""
    from tformer.loading import from_pretrained
    from tformer.peft import load_adapter, unload_lora

    model = from_pretrained(args.model)
    load_adapter(model, args.adapter)
    unload_lora(model, merge=True)
    model.save_pretrained(args.out)
    try:  # the base model's tokenizer, when it has one, goes along
        from tformer.tokenizers import load_tokenizer

        load_tokenizer(args.model).save(args.out)
    except (ValueError, FileNotFoundError):
        pass
    print(f"merged {args.adapter} into {args.model}; model in {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``merge-lora`` command to the CLI."""
    p = sub.add_parser(
        "merge-lora",
        help="merge a LoRA adapter into its base model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="DIR", help="the base model (tformer or Hugging Face)")
    p.add_argument(
        "--adapter", required=True, metavar="DIR", help="adapter_config.json + adapter_model.safetensors"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the merged model")
    p.set_defaults(func=run)
