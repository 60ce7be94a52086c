"""The unit every pipeline stage consumes: one fixed-length frame of mono int16 PCM at a stream time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """``samples`` (int16, mono) starting at stream sample ``start`` of a stream at ``rate`` Hz.

    Stream time counts only samples received: a pause on the switch leaves no trace in it, so
    ``t`` is what every decision is dated by, never the wall clock.
    """

    samples: np.ndarray
    start: int
    rate: int

    @property
    def t(self) -> float:
        """Start of the frame in stream seconds."""
        return self.start / self.rate

    @property
    def end_t(self) -> float:
        """End of the frame in stream seconds."""
        return (self.start + len(self.samples)) / self.rate

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.rate
