"""User-input errors: the CLI prints them as one line and exits 2 without a traceback."""


class ConfigError(ValueError):
    """A config key with what was expected and what was found, in one line."""

    def __init__(self, key: str, expected: str, found: object) -> None:
        self.key, self.expected, self.found = key, expected, found
        super().__init__(f"config key '{key}': expected {expected}, found {found!r}")
