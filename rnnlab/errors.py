"""Errors a user can cause. The CLI turns every UserError into one line on stderr and exit 2."""


class UserError(Exception):
    """A mistake in the user's input (file, key, value): reported in one line, exit status 2."""


class ConfigError(UserError):
    """A bad value in an experiment file or override.

    The message reads ``FILE: KEY: got VALUE; allowed: WHAT`` so that one line says where, what and
    what would have been accepted.
    """

    def __init__(self, file: str, key: str, value: object, allowed: str, hint: str = ""):
        self.file, self.key, self.value, self.allowed = file, key, value, allowed
        msg = f"{file}: {key}: got {value!r}; allowed: {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
