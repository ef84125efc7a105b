"""One exception type for bad input: the CLI prints its message as a single line."""


class InputError(Exception):
    """Bad or missing input. The message names the file and how to fix it."""


class TrainingError(InputError):
    """Training cannot give a usable model (a non-finite loss): the message names the run, the
    epoch and what to change."""
