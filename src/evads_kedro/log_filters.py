"""Logging filter for a quiet start: third-party warnings a user cannot act on are listed once
at DEBUG instead of printed; the project's own warnings pass unchanged.

Attached to the ``py.warnings`` logger (where ``logging.captureWarnings`` sends
``warnings.warn`` calls) by :func:`install_warning_filter`, called from ``settings.py``: kedro
refuses project classes in ``conf/logging.yml`` unless ``KEDRO_LOGGING_MODULE_ALLOWLIST`` names
them, and a plain ``kedro run`` must work without that variable.
"""

from __future__ import annotations

import logging
import re

__all__ = ["ThirdPartyWarnings", "install_warning_filter"]

# formatwarning's "<file>:<line>: <Category>: <message>"
_HEAD = re.compile(r"^\s*(?P<file>.+?):(?P<line>\d+): (?P<category>\w+): ")


class ThirdPartyWarnings(logging.Filter):
    """Drop captured warnings raised from files outside ``own`` (path fragments, default the
    ``evads_kedro`` package and the project's tests); each distinct one is logged once at DEBUG
    on ``evads_kedro.warnings`` (visible with a DEBUG log level)."""

    def __init__(self, own: tuple[str, ...] = ("evads_kedro", "/tests/")) -> None:
        super().__init__()
        self.own = own
        self.seen: set[tuple[str, str, str]] = set()
        self.debug = logging.getLogger("evads_kedro.warnings")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        m = _HEAD.match(text)
        if m is None or any(o in m["file"] for o in self.own):
            return True
        key = (m["file"], m["line"], m["category"])
        if key not in self.seen:
            self.seen.add(key)
            self.debug.debug("third-party warning (filtered): %s", text.strip().splitlines()[0])
        return False


def install_warning_filter() -> ThirdPartyWarnings:
    """Attach one :class:`ThirdPartyWarnings` to ``py.warnings`` (idempotent) and return it."""
    logger = logging.getLogger("py.warnings")
    for f in logger.filters:
        if isinstance(f, ThirdPartyWarnings):
            return f
    f = ThirdPartyWarnings()
    logger.addFilter(f)
    return f
