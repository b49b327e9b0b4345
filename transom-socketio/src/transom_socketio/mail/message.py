"""One rendered message, ready for a transport.

A ``Mail`` holds no line break in its recipient or subject: each becomes a header,
and a line break there would start a header (or a body) of the sender's choosing.
Templates flatten the subject before building one; anything else is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mail", "one_line"]


def one_line(text: str) -> str:
    """``text`` with every line break (``\\r``, ``\\n`` and the other separators
    ``str.splitlines`` knows) and the blanks around it made one space, trimmed."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


@dataclass(frozen=True)
class Mail:
    """``kind`` names the template (``verify``, ``reset``...); ``text`` is the body."""

    kind: str
    to: str
    subject: str
    text: str

    def __post_init__(self) -> None:
        for name in ("to", "subject"):
            value = getattr(self, name)
            if one_line(value) != value or not value:
                raise ValueError(f"a mail's {name} must be one non-empty line")
        if "@" not in self.to:
            raise ValueError("a mail's recipient must be an email address")

    @property
    def domain(self) -> str:
        """The recipient's domain, lower-cased: all of the address a log line may show."""
        return self.to.rpartition("@")[2].lower()
