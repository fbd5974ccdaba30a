"""Validation of artifact names and archive member paths (docs/security.md).

A name is a relative POSIX path such as ``model.pt`` or ``checkpoints/step-100.pt``. One
spelling per name: no empty, ``.`` or ``..`` segments, so two spellings can never name the
same file and no name can climb out of the directory it is joined to.
"""

from __future__ import annotations

from runyard import errors

#: Longest artifact name, in characters.
NAME_MAX = 255
#: Longest archive member path, in characters (one segment stays within NAME_MAX).
MEMBER_PATH_MAX = 4096
#: A run's artifact directory packed as one file, as its artifact index names it; its upload
#: archives the run (runyard.archiving).
BUNDLE_NAME = "artifacts.tar.zst"
#: The artifact kind of that bundle.
BUNDLE_KIND = "bundle"


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def check_relative_path(value: object, field: str, max_length: int) -> str:
    """Return ``value`` if it is a safe relative POSIX path, else raise ValidationError."""
    if not isinstance(value, str):
        raise errors.ValidationError(
            f"{field}: expected a string, got {type(value).__name__}", field=field
        )
    if not value:
        raise errors.ValidationError(f"{field}: must not be empty", field=field)
    if len(value) > max_length:
        raise errors.ValidationError(
            f"{field}: {len(value)} characters, at most {max_length} allowed", field=field
        )
    if any(_is_control(c) for c in value):
        raise errors.ValidationError(
            f"{field}: control characters are not allowed in {value!r}", field=field
        )
    if "\\" in value:
        raise errors.ValidationError(
            f"{field}: use '/' as separator, not '\\', in {value!r}", field=field
        )
    if value.startswith("/"):
        raise errors.ValidationError(
            f"{field}: must be a relative path, got {value!r}", field=field
        )
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            raise errors.ValidationError(
                f"{field}: empty, '.' and '..' segments are not allowed in {value!r}",
                field=field,
            )
        if len(segment) > NAME_MAX:
            raise errors.ValidationError(
                f"{field}: a path segment is longer than {NAME_MAX} characters", field=field
            )
    return value


def validate_artifact_name(name: object) -> str:
    """Return ``name`` if it is a valid artifact name, else raise ValidationError(field="name")."""
    return check_relative_path(name, "name", NAME_MAX)
