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


def exception_line(exc: BaseException) -> str:
    """`Type: message` on one line, the message being the exception's meaningful line.

    paddle's multi-line messages (to_static's "In transformed code:" with a code excerpt, C++ errors
    followed by "[Hint: ...]" and "(at /paddle/...)") put the real cause on their last line that is
    neither blank nor a hint or source location; a one-line message is kept as it is."""
    lines = [line.strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line and not line.startswith(("[Hint:", "(at ", "[operator <", "^"))]
    if not lines:
        return type(exc).__name__
    text = lines[-1] if len(lines) > 1 else lines[0]
    return text if text.split(":", 1)[0].endswith(("Error", "Exception")) else f"{type(exc).__name__}: {text}"
