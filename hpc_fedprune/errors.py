"""Exceptions that the command line turns into exit statuses.

`InputError` is the user's mistake (bad config, missing files, impossible settings): the
program prints its one-line message on rank 0 and every rank exits with status 2.
Anything else is an internal failure (status 1) and aborts the whole MPI job.
"""


class InputError(Exception):
    """Bad input from the user: config, files or arguments. Exit status 2."""


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
