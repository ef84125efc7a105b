"""One exception type for bad input: the CLI prints its message as a single line."""


class InputError(Exception):
    """Bad or missing input. The message names the file and how to fix it."""
