"""ebm-train's command line: help with defaults and examples before any heavy import, the list
of config fields, and a hint for a mistyped one."""

import subprocess
import sys

from conftest import child_env

from ebm.config import EBMConfig


def cli(*args: str, cwd=None, **env_extra: str) -> subprocess.CompletedProcess:
    env = child_env(**env_extra)
    return subprocess.run(
        [sys.executable, "-m", "commands", "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_shows_defaults_and_examples_without_loading_torch():
    code = (
        "import sys; from commands import cli\n"
        "for parser in (cli.train_parser, cli.evaluate_parser, cli.generate_parser, cli.diagnose_parser, cli.export_parser):\n"
        "    parser().format_help()\n"
        "print('torch' in sys.modules)"
    )
    env = child_env()
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "False"
    text = cli("--help").stdout
    assert "(default: cpu)" in text and "(default: builtin" in text and "ebm-train --resume" in text
    assert "(default: None)" not in text


def test_list_config_names_every_field_with_its_default_and_meaning():
    lines = cli("--list-config").stdout.splitlines()
    assert len(lines) == len(EBMConfig.describe())
    assert lines[0].split()[:3] == ["latent_dim", "int", "640"] and "sphere" in lines[0]


def test_a_mistyped_field_gets_a_suggestion_before_anything_is_written(tmp_path):
    proc = cli("--set", "knn_kk=3", "--max-steps", "1", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean knn_k?" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_a_preset_is_chosen_by_device_and_config_and_set_apply_on_top(tmp_path):
    import dataclasses
    import json

    import pytest

    from commands.cli import train_parser
    from commands.specs import TrainSpec, spec_from
    from ebm.presets import PRESETS, choose_preset
    from trainer.startup import UserError, build_config, run_preset

    def spec(*argv: str) -> TrainSpec:
        return spec_from(TrainSpec, train_parser().parse_args(argv), out=tmp_path, argv=argv)

    def config(s: TrainSpec) -> EBMConfig:
        return build_config(s, run_preset(s)[0])

    assert choose_preset(None, "cpu")[0].name == "cpu" and choose_preset(None, "vulkan:0")[0].name == "cpu"
    assert choose_preset(None, "cuda:1")[0].name == "seed" and choose_preset("cpu", "cuda")[1] == "--preset"
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"batch_size": 4, "latent_dim": 128}))
    args = spec("--config", str(config_file), "--set", "latent_dim=64", "--set", "context_heads=2")
    cfg = config(args).replace(vocab_size=1000)
    assert cfg.context_global == PRESETS["cpu"].config["context_global"]  # from the preset
    assert (cfg.batch_size, cfg.latent_dim, cfg.vocab_size) == (4, 64, 1000)  # the file, then --set, then the tokenizer
    seed = config(spec("--preset", "seed")).replace(vocab_size=50257)
    assert seed == EBMConfig(vocab_size=50257)  # the seed preset is the specification's defaults
    with pytest.raises(UserError, match="unknown preset"):
        run_preset(dataclasses.replace(args, preset="nonsense"))


def test_compile_where_it_cannot_run_is_refused_before_anything_is_written(tmp_path):
    proc = cli("--compile", "--max-steps", "1", "--out", str(tmp_path), cwd=tmp_path, CC="no-such-compiler-here")
    assert proc.returncode != 0 and "leave out --compile" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())
