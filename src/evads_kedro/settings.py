"""Project settings: hooks, config loader and the environment guards every run needs."""

import os

from kedro.config import OmegaConfigLoader

from evads_kedro.credentials import CredentialsEnvHook
from evads_kedro.hooks import PrintReportsHook, ValidateParametersHook
from evads_kedro.log_filters import install_warning_filter

# No model hub is reachable in our target environments: a hub lookup would hang, not fail.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
install_warning_filter()  # a quiet start: third-party warnings at DEBUG (conf/logging.yml)

HOOKS = (ValidateParametersHook(), PrintReportsHook(), CredentialsEnvHook())

# Under accelerate/torchrun every rank starts its own Kedro session: only rank 0 tracks (the
# other ranks would each open a kedro-mlflow run against the same store).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",) if os.environ.get("RANK", "0") != "0" else ()

CONFIG_LOADER_CLASS = OmegaConfigLoader


def _env(name: str, default: str | None = None) -> str | None:
    """``${env:NAME,default}`` in any config file (Omegaconf's oc.env is credentials-only)."""
    return os.environ.get(name, default)


CONFIG_LOADER_ARGS = {
    "custom_resolvers": {"env": _env},
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
