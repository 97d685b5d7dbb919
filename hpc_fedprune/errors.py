"""Exceptions that the command line turns into exit statuses.

`InputError` is the user's mistake (bad config, missing files, impossible settings): the
program prints its one-line message on rank 0 and every rank exits with status 2.
`StorageError` means the run directory could not be written (disk full, quota, file-size
limit, I/O error): rank 0 prints one line, every completed round stays readable, and the
job exits with status 74. Anything else is an internal failure (status 1) and aborts the
whole MPI job.
"""


class InputError(Exception):
    """Bad input from the user: config, files or arguments. Exit status 2."""


class StorageError(Exception):
    """The run directory could not be written. Exit status 74.

    Raised only where nothing completed has been lost: the message says which file could
    not be written and why.
    """


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_STORAGE = 74  # EX_IOERR of sysexits.h: not requeued by the job scripts (75 is)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped at once by a second Ctrl-C
