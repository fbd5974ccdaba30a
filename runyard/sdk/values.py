"""What the SDK keeps of the values a training loop hands it: metric names, numbers and
steps. Anything else is dropped with one warning (:class:`runyard.sdk.notice.Notices`), never
raised into the loop. These are the slow paths of :meth:`runyard.sdk.run.Run.log`: plain
``int`` and ``float`` values and known names never reach them.
"""

from __future__ import annotations

from typing import Any

from runyard import defaults
from runyard.sdk.notice import Notices

#: Longest metric name: the server's bound (docs/progress-protocol.md), so that every mode keeps
#: the same points; longer names are dropped with one warning.
TAG_MAX = defaults.METRIC_NAME_MAX
#: Largest step (a signed 64-bit integer, what every store holds); larger ones are dropped.
MAX_STEP = 2**63 - 1


def admit_tag(notices: Notices, tags: set[str], tag: Any) -> bool:
    """Whether points of a new metric name ``tag`` are kept (it joins ``tags``): a string of
    1 to :data:`TAG_MAX` characters, within the server's cap of names per run."""
    if not isinstance(tag, str) or not tag or len(tag) > TAG_MAX:
        notices.warn_once(f"tag:{str(tag)[:80]}", f"runyard: metric name "
                          f"{str(tag)[:80]!r} dropped: expected a string of 1 to "
                          f"{TAG_MAX} characters")
        return False
    if len(tags) >= defaults.MAX_TAGS_PER_RUN:
        # The server's cap too: points of further tags would be refused there.
        notices.warn_once(
            "max-tags", f"runyard: more than {defaults.MAX_TAGS_PER_RUN} distinct metric "
            f"names; new names are dropped (first dropped: {tag!r})")
        return False
    tags.add(tag)
    return True


def coerce_value(notices: Notices, tag: str, value: Any) -> float | None:
    """``value`` as a plain ``float`` (or ``int``), or None: not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, float):
        # A subclass (numpy.float64 is one) would reach the sinks with its own repr.
        return float(value)
    if isinstance(value, int):
        return int(value)
    if not isinstance(value, str | bytes) and hasattr(value, "__float__"):
        try:  # numpy scalars, 0-d tensors
            return float(value)
        except Exception:  # any failure means "not a number"
            pass
    notices.warn_once(f"value:{tag}", f"runyard: non-numeric value for {tag!r} "
                      f"dropped ({type(value).__name__}); further ones are "
                      "dropped silently")
    return None


def coerce_step(notices: Notices, step: Any) -> int | None:
    """``step`` as an ``int`` from 0 to :data:`MAX_STEP`, or None."""
    try:
        number = float(step) if not isinstance(step, int) else step
        if isinstance(number, float) and not number.is_integer():
            raise ValueError
        result = int(number)
        if not 0 <= result <= MAX_STEP:
            raise ValueError
        return result
    except (TypeError, ValueError, OverflowError):
        notices.warn_once("step", f"runyard: step {str(step)[:40]} is not an integer "
                          f"from 0 to {MAX_STEP}; those points are dropped")
        return None
