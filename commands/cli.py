"""Every command line of the tool and its entry point. Each parses before anything heavy is
imported (`--help` is instant), turns the arguments once into the command's frozen spec
(commands.specs), and hands it to the command's module, which loads torch only once it has
work to do."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .specs import DiagnoseSpec, EvaluateSpec, ExportSpec, GenerateSpec, TrainSpec, spec_from


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help says it), examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


EXAMPLES = """examples:
  ebm-train --detach                                   built-in corpus, GPT-2 BPE, default config, in the background
  ebm-train --max-minutes 10 --set learning_rate=3e-4  a fixed training-time budget and one config change
  ebm-train --data path/to/text.txt --tokenizer bpe:8000 --set latent_dim=128 --set context_heads=4
  ebm-train --resume                                   continue the newest run exactly where it stopped
  ebm-train --list-config                              every config field with its default and meaning
"""


def command_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def train_parser() -> argparse.ArgumentParser:
    p = command_parser(prog="ebm-train", description="Train an energy-based language model on the hypersphere.", epilog=EXAMPLES)
    add_data_options(p)
    add_budget_options(p)
    add_run_options(p)
    add_model_options(p)
    add_output_options(p)
    return p


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and device")
    g.add_argument(
        "--data", help="builtin, wikitext-2, wikitext-103, or a folder / text file (default: builtin; resume: the run's)"
    )
    g.add_argument("--tokenizer", help="gpt2, bpe:N, a tokenizer.json or a tokenizer folder (default: gpt2; resume: the run's)")
    g.add_argument("--device", default="cpu", help="cpu, cuda[:N] or vulkan[:N]")


def add_budget_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("how long and how big")
    g.add_argument("--epochs", type=int, help="number of epochs (default: the config's epochs)")
    g.add_argument("--batch-size", type=int, help="windows per batch (default: the config's batch_size)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    g.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        metavar="K",
        help="split each batch into K micro-batches whose gradients add up (less memory, same batch)",
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "tf32", "fp32"],
        help="auto: the config's head_dtype (bf16 where native); bf16: encoder and heads in bf16; "
        "tf32: float32 with TF32 matmuls on CUDA; fp32: float32 throughout",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="run the context encoder through torch.compile: about 20%% more targets/s on a CPU after a cold "
        "compile of about a minute in the first step; needs a C compiler (triton on CUDA)",
    )
    g.add_argument("--max-minutes", type=float, help="stop after this much training time (optimiser steps only, not evaluation)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which run")
    g.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID", help="continue a run (without RUN_ID: the newest)")
    g.add_argument(
        "--accept-changed-data",
        action="store_true",
        help="with --resume: train on the run's data path even if its text changed (said on stderr)",
    )
    g.add_argument("--run-id", help="id of the run, its folder name (default: date-time and a random suffix)")
    g.add_argument("--name", help="a human name for the run, shown by the dashboard (editable there)")
    g.add_argument("--out", default=".", help="folder holding checkpoints/ and logs/")


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--preset",
        choices=["cpu", "seed"],
        help="starting config and tokenizer: cpu (small, learns in minutes on a CPU) or seed (the "
        "original 640-D specification); default: seed on CUDA, cpu elsewhere",
    )
    g.add_argument("--config", help="EBMConfig fields as a JSON file, on top of the preset (keys: --list-config)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    g.add_argument("--list-config", action="store_true", help="print every config field with its type, default and meaning")
    g.add_argument(
        "--embeddings",
        default="auto",
        choices=["auto", "gpt2", "minilm", "own"],
        help="pretrained source for token embeddings and splat means",
    )
    g.add_argument("--no-curriculum", action="store_true", help="use n_splats_init and splat_temperature throughout")


def add_output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--detach", action="store_true", help="run in the background; print run id, pid and log path")
    g.add_argument("--seed", type=int, help="random seed (default: the config's seed, 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--log-every", type=int, default=1, help="log a batch record every N steps")
    g.add_argument(
        "--report-to",
        action="append",
        default=[],
        choices=["tensorboard", "wandb", "mlflow"],
        help="also write the log for tensorboard (<out>/logs/tensorboard/<run_id>), wandb (offline, <out>/logs/wandb) "
        "or mlflow (file store <out>/logs/mlruns); repeatable",
    )


def evaluate_parser() -> argparse.ArgumentParser:
    p = command_parser(
        prog="ebm-evaluate",
        description="Score a checkpoint on whole texts, every token once with a sliding window: token-level and "
        "word-level perplexity and bits per byte of both heads, coverage and generation quality.",
        epilog="examples:\n  ebm-evaluate --checkpoint checkpoints/<run_id> --data ../shared/data/wikitext-2/wiki.valid.tokens "
        "--split all --detokenize\n  ebm-evaluate --checkpoint checkpoints/<run_id> --data builtin --split test --memory builtin",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file, a run folder (its latest.pt) or an ebm-export folder")
    p.add_argument("--data", default="builtin", help="builtin, wikitext-2, wikitext-103, a folder or a text file")
    p.add_argument("--split", default="valid", choices=["valid", "test", "all"], help="'all' scores a whole single file")
    p.add_argument("--detokenize", action="store_true", help="undo WikiText tokenisation (' @-@ ' etc.) first")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N tokens (0: the whole text)")
    p.add_argument("--stride", type=int, default=0, help="new tokens per window (0: half of context_global)")
    p.add_argument("--samples", type=int, default=4, help="generated samples for quality metrics")
    p.add_argument("--sample-tokens", type=int, default=24, help="tokens generated per sample")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or vulkan[:N]")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled prompts' generations")
    p.add_argument(
        "--memory",
        metavar="CORPUS",
        help="mix in memory splats written from CORPUS's train split "
        "(builtin, a folder, ...), fitted on its valid split; p_E's figures are then the mixture's",
    )
    p.add_argument(
        "--memory-tokens", type=int, default=0, metavar="N", help="write memory splats from the first N train tokens only"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def diagnose_parser() -> argparse.ArgumentParser:
    p = command_parser(
        prog="ebm-diagnose",
        description="Diagnose a checkpoint or every checkpoint of a run.",
        epilog="examples:\n  ebm-diagnose --checkpoint checkpoints/<run_id>/latest.pt --report\n  ebm-diagnose --batch",
    )
    p.add_argument("--checkpoint", help="a .pt file, a run folder or an ebm-export folder")
    p.add_argument("--report", nargs="?", const="", metavar="DIR", help="write report.md + plots (default: <run>/report)")
    p.add_argument("--batch", action="store_true", help="tabulate every checkpoint of a run")
    p.add_argument("--run-id", help="with --batch: the run (default: the newest)")
    p.add_argument("--out", default=".", help="folder holding checkpoints/ and logs/")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = command_parser(
        prog="ebm-export",
        description="Write a model-only folder (safetensors + config.json + tokenizer) from a checkpoint.",
        epilog="example:\n  ebm-export --checkpoint checkpoints/<run_id>/latest.pt   (writes checkpoints/<run_id>/export)",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run folder (its latest.pt)")
    p.add_argument("--out", help="the folder to write (default: export/ beside the checkpoint)")
    return p


def generate_parser() -> argparse.ArgumentParser:
    p = command_parser(
        prog="ebm-generate",
        description="Generate text from a checkpoint, optionally under constraints added at generation time: "
        "keywords that must appear anywhere, words to avoid, a right context to join (infilling), a topic.",
        epilog="examples:\n  ebm-generate --checkpoint checkpoints/<run_id> --prompt 'The river' --keywords bridge,city\n"
        "  ebm-generate --checkpoint checkpoints/<run_id> --prompt 'He was born in' --tokens 12 "
        "--right-context 'where he studied law.' --json",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file, a run folder (its latest.pt) or an ebm-export folder")
    p.add_argument("--prompt", default="", help="the text to continue (empty: an unconditioned start)")
    p.add_argument("--tokens", type=int, default=32, help="tokens to generate per sample")
    p.add_argument("--samples", type=int, default=1, help="samples to generate")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--sampler", default="langevin", help="langevin, direct, rejection, importance, smc or resample-move")
    p.add_argument("--keywords", default="", metavar="W[,W...]", help="words or phrases that must appear somewhere")
    p.add_argument("--avoid", default="", metavar="W[,W...]", help="words that must not appear")
    p.add_argument("--right-context", default="", metavar="TEXT", help="text that must follow the generated span")
    p.add_argument("--topic", default="", metavar="W[,W...]", help="words whose neighbourhood the text should stay near")
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a constraint kind's weight: keyword, avoid, right_context or topic (repeatable)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of p_E")
    p.add_argument("--top-k", type=int, default=40, help="top-k filter of p_E (0: none); constraint tokens are always kept")
    p.add_argument("--budget-seconds", type=float, default=None, help="seconds per sample (langevin: rounds until spent)")
    p.add_argument("--budget-drafts", type=int, default=64, help="drafts of the span per sample (langevin: 2 per chain)")
    p.add_argument("--chains", type=int, default=16, help="langevin: chains per sample")
    p.add_argument("--steps", type=int, default=5, help="langevin: steps per chain")
    p.add_argument(
        "--move-share",
        type=float,
        default=0.75,
        help="langevin: share of the budget spent on Metropolis moves of the drawn text (0: none)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="one JSON object per sample per line")
    return p


def _run(module: str, spec) -> int:
    return importlib.import_module(f"commands.{module}").run(spec)  # the heavy module, only now


def train(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = train_parser().parse_args(argv)
    return _run("train_command", spec_from(TrainSpec, args, out=Path(args.out).resolve(), argv=argv))


def evaluate(argv: list[str] | None = None) -> int:
    args = evaluate_parser().parse_args(argv)
    return _run("evaluate_command", spec_from(EvaluateSpec, args, checkpoint=Path(args.checkpoint)))


def generate(argv: list[str] | None = None) -> int:
    args = generate_parser().parse_args(argv)
    return _run("generate_command", spec_from(GenerateSpec, args, checkpoint=Path(args.checkpoint)))


def diagnose(argv: list[str] | None = None) -> int:
    args = diagnose_parser().parse_args(argv)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    return _run("diagnose_command", spec_from(DiagnoseSpec, args, checkpoint=checkpoint, out=Path(args.out)))


def export(argv: list[str] | None = None) -> int:
    args = export_parser().parse_args(argv)
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "export"
    return _run("export_command", spec_from(ExportSpec, args, checkpoint=checkpoint, out=out))


COMMANDS = {"train": train, "evaluate": evaluate, "generate": generate, "diagnose": diagnose, "export": export}
