"""Typed parameters: one frozen pydantic model per YAML block, validated once per run.

:func:`validate_parameters` checks the whole merged parameter tree (conf/<env> + ``--params``)
and raises :class:`ParameterError` listing every problem by its full dotted key path, with the
closest valid key for a typo. Defaults live in the YAML only; see :mod:`evads_kedro.params.base`.
"""

from evads_kedro.params.chat import ChatBackend, check_chat_backend
from evads_kedro.params.errors import ParameterError
from evads_kedro.params.project import ProjectParams, validate_parameters

__all__ = ["ChatBackend", "ParameterError", "ProjectParams", "check_chat_backend",
           "validate_parameters"]
