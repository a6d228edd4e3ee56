"""The quiet-start filter of conf/logging.yml (evads_kedro.log_filters)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from evads_kedro.log_filters import ThirdPartyWarnings

ROOT = Path(__file__).resolve().parents[1]


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, msg, None, None)


def test_third_party_warnings_are_dropped_and_listed_once_at_debug(caplog):
    f = ThirdPartyWarnings()
    third = ("/venv/lib/python3.11/site-packages/kedro_mlflow/config.py:22: "
             "PydanticDeprecatedSince20: Support for class-based `config` is deprecated\n"
             "  class X(BaseModel):\n")
    ours = "/work/src/evads_kedro/backends/ocr.py:300: UserWarning: RapidOCR runs on CUDA 0\n"
    with caplog.at_level(logging.DEBUG, logger="evads_kedro.warnings"):
        assert f.filter(_record(third)) is False
        assert f.filter(_record(third)) is False
        assert f.filter(_record(ours)) is True
        assert f.filter(_record("a plain message")) is True
    listed = [r.getMessage() for r in caplog.records if r.name == "evads_kedro.warnings"]
    assert len(listed) == 1 and "PydanticDeprecatedSince20" in listed[0]
    assert {r.levelno for r in caplog.records if r.name == "evads_kedro.warnings"} == {10}


def test_settings_install_the_filter_once_and_it_passes_only_our_warnings():
    import evads_kedro.settings  # noqa: F401  (installs it)
    from evads_kedro.log_filters import install_warning_filter

    logger = logging.getLogger("py.warnings")
    mine = [f for f in logger.filters if isinstance(f, ThirdPartyWarnings)]
    assert len(mine) == 1 and install_warning_filter() is mine[0]
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append(r.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logging.captureWarnings(True)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = logging._showwarning  # type: ignore[attr-defined]
            warnings.warn_explicit("from a dependency", DeprecationWarning,
                                   "/x/site-packages/dep/mod.py", 3)
            warnings.warn_explicit("from us", UserWarning, str(ROOT / "src/evads_kedro/x.py"), 4)
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
    assert len(seen) == 1 and "from us" in seen[0]
