"""The two kinds of failure trainctl reports, and their exit codes.

UserError: the input is wrong (a flag, a config, a path); the message says
what is wrong and how to fix it; exit code 2.
RuntimeFailure: the input was fine but running it failed (a worker died,
the disk is full); exit code 1.
Both are shown as one line without a traceback unless --debug is given.
"""


class TrainctlError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UserError(TrainctlError):
    exit_code = 2


class RuntimeFailure(TrainctlError):
    exit_code = 1
