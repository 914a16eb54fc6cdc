"""The files of a run, as one contract between what writes them (the trainer, ebm-export) and
what reads them (the dashboard, ebm-evaluate, ebm-diagnose): paths and run ids, JSON-lines logs,
status and lock, atomic writes, checkpoints and exports, and the schema they share.

Nothing here imports torch at module level: the dashboard's light pages use this package
without it (tests/test_layering.py)."""
