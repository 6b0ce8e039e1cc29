"""Supervised mode (step debugging): pauses before tasks. Placeholder until implemented."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.errors import InvalidStateForCommand
from domain.model import Node
from domain.state import ExecutionMode, Token

if TYPE_CHECKING:
    from domain.runner import Run


def may_run(run: Run, token: Token, node: Node) -> bool:
    return True


def step_forward(run: Run, *, token_id: int | None, actor: str | None) -> None:
    raise InvalidStateForCommand("Supervised mode is not available yet.")


def step_backward(run: Run, *, actor: str | None) -> None:
    raise InvalidStateForCommand("Supervised mode is not available yet.")


def set_mode(run: Run, mode: ExecutionMode, *, actor: str | None) -> None:
    raise InvalidStateForCommand("Supervised mode is not available yet.")
