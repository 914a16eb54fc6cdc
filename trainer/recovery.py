"""What the trainer does about non-finite steps: skip the update; after `patience` in a row,
roll back to the last checkpoint with half the learning rate; after `max_rollbacks`, stop.

The count lives here, not in the checkpoint the run rolls back to, so rolling back cannot
reset it: recovery is bounded.
"""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    SKIP = "skip"  # drop this update and go on
    ROLL_BACK = "roll_back"  # reload the last checkpoint, halve the learning rate
    STOP = "stop"  # stop with a checkpoint of the last finite state


class Recovery:
    def __init__(self, patience: int = 3, max_rollbacks: int = 2):
        self.patience, self.max_rollbacks = patience, max_rollbacks
        self.bad_steps = 0  # non-finite steps in a row
        self.rollbacks = 0

    def on_finite(self) -> None:
        self.bad_steps = 0

    def on_non_finite(self, can_roll_back: bool) -> Action:
        self.bad_steps += 1
        if self.bad_steps < self.patience:
            return Action.SKIP
        self.bad_steps = 0
        if self.rollbacks >= self.max_rollbacks or not can_roll_back:
            return Action.STOP
        self.rollbacks += 1
        return Action.ROLL_BACK

    @property
    def lr_scale(self) -> float:
        """Learning-rate factor: halved by each rollback of this run."""
        return 0.5**self.rollbacks

    def state_dict(self) -> dict:
        return {"rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict) -> None:
        self.rollbacks = int(state.get("rollbacks", 0))


def stopped_alert() -> dict:
    """The alert record of a run that recovery stopped."""
    return {
        "rule": "nan_stop",
        "severity": "error",
        "message": "training stays non-finite; stopped with a checkpoint of the last finite state",
        "advice": "lower learning_rate, raise warmup_steps, or check the data",
    }


def rolled_back_alert(step: int, checkpoint_name: str) -> dict:
    """The alert record of a rollback to `checkpoint_name` at `step`."""
    return {
        "rule": "rollback",
        "severity": "error",
        "message": f"rolled back to step {step} from {checkpoint_name}; learning rate halved",
        "advice": "if this repeats, lower learning_rate in the config",
    }
