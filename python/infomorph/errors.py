"""The one user-error type of the network layer: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """Something the user asked for cannot be done (bad option, missing or damaged file); the
    message names the argument or file and what to do."""


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C (SIGINT) at a batch boundary after saving a resumable checkpoint."""

    def __init__(self, message: str, out_dir: str):
        super().__init__(message)
        self.out_dir = out_dir
