"""Errors a user can make, reported as one line and exit code 2 by the CLI."""


class UserError(Exception):
    """A mistake in the user's input (config, path, flag, checkpoint): exit 2."""

    exit_code = 2


class Divergence(RuntimeError):
    """Training produced a non-finite or exploding loss: exit 3."""

    exit_code = 3
