"""Validate the answers before cookiecutter writes anything.

The answers arrive as JSON data (rendered with ``tojson`` into a raw string and
parsed with ``json.loads``), never pasted into Python code, so no answer can
change what this script does. On a bad answer it prints one line naming the
variable and the rule, and exits 1; cookiecutter then removes the output.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

SLUG_RULE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_RULE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# Names that would shadow the standard library or a dependency when imported (the
# import names of the engine's requirements, its extras' and the dev tools').
RESERVED_SLUGS = set(sys.stdlib_module_names) | {
    "transom_socketio",
    "tornado",
    "socketio",
    "engineio",
    "jwt",
    "cryptography",
    "argon2",
    "dotenv",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "prometheus_client",
    "pymongo",
    "bson",
    "gridfs",
    "motor",
    "redis",
    "aiosmtplib",
    "aiosmtpd",
    "uvloop",
    "aiohttp",
    "secantus",
    "wiredtiger",
    "pytest",
    "pytest_tornado",
    "xdist",
    "hypothesis",
    "schemathesis",
    "mypy",
    "ruff",
    "setuptools",
    "pkg_resources",
    "test",
    "tests",
    "site",
}
# Tornado's template syntax: the project's name is written into its pages and mails.
# (Written as escapes: cookiecutter renders this file with Jinja, whose syntax they are too.)
TEMPLATE_BRACES = frozenset("\x7b\x7d")
CHOICES = {
    "mongo_driver": ("pymongo", "motor"),
    "message_queue": ("none", "redis"),
    "use_docker": ("y", "n"),
}


def is_valid_slug(slug: object) -> bool:
    return (
        isinstance(slug, str)
        and SLUG_RULE.match(slug) is not None
        and not keyword.iskeyword(slug)
        and slug not in RESERVED_SLUGS
    )


def suggested_slug(answer: str) -> str:
    """A valid slug close to ``answer``, for the error line to offer."""
    ascii_answer = unicodedata.normalize("NFKD", answer).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_answer.lower())
    slug = "_".join(words) or "app"
    if slug[0].isdigit():
        slug = f"app_{slug}"
    if not is_valid_slug(slug):
        slug = f"{slug}_app"
    return slug


def problems(answers: dict[str, object]) -> list[str]:
    """Return one message per invalid answer, naming the variable and the rule."""
    found = []
    # The free texts first: the slug is made from the project's name.
    for name in ("project_name", "description", "author_name"):
        value = answers.get(name)
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > 200
            # One line as Python reads lines too (U+2028, U+0085...), no control character.
            or value.splitlines() != [value]
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
        ):
            found.append(f"{name} is invalid: it must be one line of 1 to 200 characters")
        elif name == "project_name" and TEMPLATE_BRACES & set(value):
            # In a page or a mail, a template tag (double braces...) would run as code.
            found.append(f"{name} is invalid: it must not contain curly braces")
    slug = answers.get("project_slug")
    if not is_valid_slug(slug):
        found.append(
            f"project_slug {slug!r} is invalid: it must be a lowercase Python identifier "
            "(letters, digits, underscores; not starting with a digit; not a keyword "
            "or the name of a standard library module or of a dependency); "
            f"for example project_slug={suggested_slug(str(slug))}"
        )
    email = answers.get("author_email")
    if not isinstance(email, str) or not EMAIL_RULE.match(email):
        found.append(f"author_email {email!r} is invalid: it must look like name@example.com")
    for name, allowed in CHOICES.items():
        if answers.get(name) not in allowed:
            found.append(
                f"{name} {answers.get(name)!r} is invalid: choose one of {', '.join(allowed)}"
            )
    return found


def main() -> int:
    found = problems(ANSWERS)
    if found:
        print(f"ERROR: {found[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
