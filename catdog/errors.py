"""The errors a user can act on, each described in one line; the CLI maps them to exit codes.

This module imports nothing heavy (no torch), so the command line can catch these errors
without paying for torch's import on `--help`.

| error                | exit code   | meaning                                                   |
|----------------------|-------------|-----------------------------------------------------------|
| ConfigError          | 2           | a config key, file or command-line option is wrong        |
| DataError            | 2           | bad photos or folders                                     |
| UnreadablePhotoError | 2           | one photo can't be decoded (a DataError)                  |
| CheckpointError      | 2           | a missing, unreadable, untrusted or foreign checkpoint    |
| Diverged             | 3           | the loss became NaN or infinite                           |
| Stuck                | 4           | MSE at the saturated-sigmoid plateau (stop_when_stuck)    |
| Interrupted          | 128 + signal| stopped on a signal after writing a resumable checkpoint  |
"""


class ConfigError(ValueError):
    """A configuration problem, described in one line that names the key or file."""


class DataError(ValueError):
    """Bad photos or folders: the message names the path and what to do."""


class UnreadablePhotoError(DataError):
    """One photo that can't be decoded; the message names the file."""


class CheckpointError(ValueError):
    """A missing, unreadable, untrusted or foreign checkpoint, in one line."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""

    # Under DDP every rank sees the same all-reduced loss and raises together (see
    # `distributed.everywhere`); likewise for the stop flag behind `Interrupted`.
    on_every_rank = True


class Stuck(RuntimeError):
    """Training and validation loss sat at the saturated-sigmoid plateau (see `catdog.stuck`)."""

    on_every_rank = True  # every rank sees the same merged metrics row


class Interrupted(RuntimeError):
    """Training stopped on a signal after writing a resumable checkpoint."""

    on_every_rank = True

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        # Picklable with its exit code (errors travel between ranks).
        return (type(self), (str(self), self.exit_code))


EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: 2,
    DataError: 2,
    CheckpointError: 2,
    Diverged: 3,
    Stuck: 4,
}
"""Exit codes of the errors with a fixed one (Interrupted carries its own)."""


def shorten(text: str, limit: int = 120) -> str:
    """`text`, cut to `limit` characters: a message repeats a value only as far as it helps."""
    return text if len(text) <= limit else f"{text[: limit - 5]} ...{text[-1]}"
