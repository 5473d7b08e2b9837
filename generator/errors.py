"""The exceptions pemesh raises. Only the CLI entry point turns them into exit codes.

Every message names the problem; ``hint`` says what to try next.
"""

from __future__ import annotations


class PemeshError(Exception):
    """Base of every error pemesh reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}\n  hint: {self.hint}" if self.hint else msg


class UsageError(PemeshError):
    """Bad command-line arguments or input files."""

    exit_code = 2


class UnsupportedModelError(PemeshError):
    """The model uses an op, dtype or shape pemesh cannot compile."""

    exit_code = 3


class DoesNotFitError(PemeshError):
    """A plan or a built image exceeds a PE's flash or RAM (the message carries the numbers)."""

    exit_code = 4


class BoardError(PemeshError):
    """A board or mesh description is malformed."""

    exit_code = 5


class ToolchainError(PemeshError):
    """A needed tool (compiler, QEMU, west) is missing or failed."""

    exit_code = 6


class BuildError(PemeshError):
    """Building a PE image failed."""

    exit_code = 7


class RunError(PemeshError):
    """Running the mesh failed: a PE stopped answering, a frame was bad, a process died."""

    exit_code = 8


class CheckError(PemeshError):
    """Outputs did not match the reference (the anchor's output)."""

    exit_code = 9
