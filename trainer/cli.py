"""The command lines of ebm-evaluate, ebm-generate, ebm-diagnose and ebm-export, parsed before anything heavy
is imported: `--help` is instant, and each command loads torch only once it has work to do.
(ebm-train's own parser lives in trainer/train.py, which follows the same rule.)"""

from __future__ import annotations

import argparse
import importlib


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help says it), examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ebm-evaluate",
        description="Score a checkpoint on whole texts, every token once with a sliding window: token-level and "
        "word-level perplexity and bits per byte of both heads, coverage and generation quality.",
        epilog="examples:\n  ebm-evaluate --checkpoint checkpoints/<run_id> --data ../shared/data/wikitext-2/wiki.valid.tokens "
        "--split all --detokenize\n  ebm-evaluate --checkpoint checkpoints/<run_id> --data builtin --split test --memory builtin",
        formatter_class=HelpFormatter,
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
    p = argparse.ArgumentParser(
        prog="ebm-diagnose",
        description="Diagnose a checkpoint or every checkpoint of a run.",
        epilog="examples:\n  ebm-diagnose --checkpoint checkpoints/<run_id>/latest.pt --report\n  ebm-diagnose --batch",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", help="a .pt file, a run folder or an ebm-export folder")
    p.add_argument("--report", nargs="?", const="", metavar="DIR", help="write report.md + plots (default: <run>/report)")
    p.add_argument("--batch", action="store_true", help="tabulate every checkpoint of a run")
    p.add_argument("--run-id", help="with --batch: the run (default: the newest)")
    p.add_argument("--out", default=".", help="folder holding checkpoints/ and logs/")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ebm-export",
        description="Write a model-only folder (safetensors + config.json + tokenizer) from a checkpoint.",
        epilog="example:\n  ebm-export --checkpoint checkpoints/<run_id>/latest.pt   (writes checkpoints/<run_id>/export)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run folder (its latest.pt)")
    p.add_argument("--out", help="the folder to write (default: export/ beside the checkpoint)")
    return p


def generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ebm-generate",
        description="Generate text from a checkpoint, optionally under constraints added at generation time: "
        "keywords that must appear anywhere, words to avoid, a right context to join (infilling), a topic.",
        epilog="examples:\n  ebm-generate --checkpoint checkpoints/<run_id> --prompt 'The river' --keywords bridge,city\n"
        "  ebm-generate --checkpoint checkpoints/<run_id> --prompt 'He was born in' --tokens 12 "
        "--right-context 'where he studied law.' --json",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file, a run folder (its latest.pt) or an ebm-export folder")
    p.add_argument("--prompt", default="", help="the text to continue (empty: an unconditioned start)")
    p.add_argument("--tokens", type=int, default=32, help="tokens to generate per sample")
    p.add_argument("--samples", type=int, default=1, help="samples to generate")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--sampler", default="langevin", help="langevin, direct, rejection, importance or smc")
    p.add_argument("--keywords", default="", metavar="W[,W...]", help="words or phrases that must appear somewhere")
    p.add_argument("--avoid", default="", metavar="W[,W...]", help="words that must not appear")
    p.add_argument("--right-context", default="", metavar="TEXT", help="text that must follow the generated span")
    p.add_argument("--topic", default="", metavar="W[,W...]", help="words whose neighbourhood the text should stay near")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE",
                   help="a constraint kind's weight: keyword, avoid, right_context or topic (repeatable)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of p_E")
    p.add_argument("--top-k", type=int, default=40, help="top-k filter of p_E (0: none); constraint tokens are always kept")
    p.add_argument("--budget-seconds", type=float, default=None, help="baselines: seconds per sample")
    p.add_argument("--budget-drafts", type=int, default=64, help="baselines: drafts of the span per sample")
    p.add_argument("--chains", type=int, default=16, help="langevin: chains per sample")
    p.add_argument("--steps", type=int, default=30, help="langevin: steps per chain")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="one JSON object per sample per line")
    return p


def _parse_then_run(parser: argparse.ArgumentParser, module: str, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    return importlib.import_module(module, __package__).cli_main(args)  # the heavy module, only now


def evaluate(argv: list[str] | None = None) -> int:
    return _parse_then_run(evaluate_parser(), ".evaluate", argv)


def diagnose(argv: list[str] | None = None) -> int:
    return _parse_then_run(diagnose_parser(), ".diagnose", argv)


def generate(argv: list[str] | None = None) -> int:
    return _parse_then_run(generate_parser(), ".generate_command", argv)


def export(argv: list[str] | None = None) -> int:
    return _parse_then_run(export_parser(), ".export", argv)
