"""An injected clock for tests of time-driven logic (breakers, alert repeat intervals, thresholds)."""

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t
