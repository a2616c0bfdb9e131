"""Errors of the simulator: a bad profile, or a server that will not take what the simulator sends."""

from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class SimulatorErrorCode(StrEnum):
    INVALID_PROFILE = "invalid_profile"
    UNKNOWN_PROFILE = "unknown_profile"
    SERVER_UNREACHABLE = "server_unreachable"
    REJECTED = "rejected"


class SimulatorError(DoorstepError):
    code = SimulatorErrorCode.INVALID_PROFILE
    status = 400


class ProfileInvalid(SimulatorError):
    """The YAML profile breaks a rule; `problems` lists each as "<key path>: <what is allowed>"."""

    code = SimulatorErrorCode.INVALID_PROFILE

    def __init__(self, detail: str, *, problems: list[str]):
        super().__init__(detail)
        self.problems = problems


class ProfileNotFound(SimulatorError):
    code = SimulatorErrorCode.UNKNOWN_PROFILE


class ServerUnreachable(SimulatorError):
    code = SimulatorErrorCode.SERVER_UNREACHABLE
    status = 503
