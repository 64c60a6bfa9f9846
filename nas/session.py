"""What a process needs to run trials of one study, in one object passed whole (to the objective,
the refit, the CLI's summary), so no one takes it apart and threads its pieces around."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from nas.config import NASConfig
    from nas.storage import StudyStorage


@dataclass
class Session:
    """What a process needs to run trials of one study; passed whole to the objective and the refit."""

    cfg: NASConfig
    study: optuna.Study
    dataset: Any
    space: Any
    storage: StudyStorage

    @property
    def engine(self):
        return self.storage.engine

    @property
    def artifact_store(self):
        return self.storage.artifacts


__all__ = ["Session"]
