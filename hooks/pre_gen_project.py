"""Reject answers that would generate a broken project, naming the field at fault.

Valid Python as it stands (the values are read in ``main`` only, as raw strings of
JSON padded with spaces: ``tojson`` escapes every quote inside), so the checks are
unit-tested by importing this file; cookiecutter renders it with the answers filled in.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

# Docker image / ECR repository names, and the prefix of SageMaker job names
# (^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ with a timestamp suffix of up to 24 characters).
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SLUG_MAX_LENGTH = 38
PACKAGE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
# The shape of every partition's region names (us-east-1, us-gov-west-1, eu-isoe-west-1,
# eusc-de-east-1), for when botocore, which knows the regions themselves, is not importable.
REGION_PATTERN = re.compile(r"^[a-z]{2,4}(-(gov|iso[a-z]?|de))?-[a-z]+-[0-9]+$")
CHOICES = {
    "python_version": ("3.10", "3.11", "3.12", "3.13"),
    "server": ("fastapi-uvicorn", "flask-gunicorn", "nginx-gunicorn-flask"),
    "framework": ("scikit-learn", "xgboost", "lightgbm", "pytorch", "tensorflow", "custom"),
}
# Names a package must not take: it would shadow what the project imports, or its tests/.
RESERVED_PACKAGES = {
    "fastapi", "flask", "gunicorn", "joblib", "keras", "lightgbm", "numpy", "sklearn",
    "tensorflow", "tests", "torch", "uvicorn", "xgboost",
}  # fmt: skip


def check_project_name(value: str) -> str | None:
    if not value.strip():
        return "project_name must not be empty"
    if any(ch in value for ch in "\r\n"):
        return "project_name must be one line"
    return None


def check_project_slug(value: str) -> str | None:
    if not SLUG_PATTERN.match(value):
        return (
            f"project_slug {value!r} is not a valid image and job-name prefix: use lowercase"
            " letters, digits and single hyphens, starting with a letter (e.g. 'iris-classifier')"
        )
    if len(value) > SLUG_MAX_LENGTH:
        return (
            f"project_slug {value!r} is {len(value)} characters long; SageMaker job names"
            f" leave room for at most {SLUG_MAX_LENGTH}"
        )
    return None


def check_package_name(value: str) -> str | None:
    if not PACKAGE_PATTERN.match(value) or keyword.iskeyword(value):
        return (
            f"package_name {value!r} is not a Python package name: use lowercase letters,"
            " digits and underscores, not starting with a digit (e.g. 'iris_classifier')"
        )
    if value in sys.stdlib_module_names or value in RESERVED_PACKAGES:
        return f"package_name {value!r} would shadow the module of the same name: pick another"
    return None


def check_one_line(field: str, value: str) -> str | None:
    if any(ch in value for ch in "\r\n"):
        return f"{field} must be one line"
    return None


def known_regions() -> set[str] | None:
    """Every region of every partition botocore knows (its own data files, no network), or
    None where botocore is not importable (cookiecutter does not need it)."""
    try:
        from botocore.loaders import Loader
    except ImportError:
        return None
    try:
        endpoints = Loader().load_data("endpoints")
        return {name for partition in endpoints["partitions"] for name in partition["regions"]}
    except Exception:  # an unreadable or reshaped data file: fall back to the pattern
        return None


def check_aws_region(value: str, regions: set[str] | None = None) -> str | None:
    """``value`` must be a region botocore knows, or shaped like one without botocore."""
    if not REGION_PATTERN.match(value):
        return f"aws_region {value!r} is not an AWS region name (e.g. 'us-east-1', 'eu-west-2')"
    regions = known_regions() if regions is None else regions
    if regions is not None and value not in regions:
        close = sorted(r for r in regions if r.split("-")[0] == value.split("-")[0])
        return (
            f"aws_region {value!r} is not a region botocore knows"
            f" ({', '.join(close[:8]) or 'e.g. us-east-1'}; a region newer than the installed"
            " botocore: upgrade it)"
        )
    return None


def check_choice(field: str, value: str) -> str | None:
    if value not in CHOICES[field]:
        return f"{field} {value!r} is not one of: {', '.join(CHOICES[field])}"
    return None


def check_boolean(field: str, value: object) -> str | None:
    if not isinstance(value, bool):
        return f"{field} must be true or false, got {value!r}"
    return None


def check_answer(field: str, value: object) -> str | None:
    """The problem with one free-text answer, if any; the template checks each one as soon
    as it is given (``local_extensions.checked``), before the next prompt."""
    text = str(value)
    if field == "project_name":
        return check_project_name(text)
    if field == "project_slug":
        return check_project_slug(text)
    if field == "package_name":
        return check_package_name(text)
    if field == "aws_region":
        return check_aws_region(text)
    return check_one_line(field, text)


FREE_TEXT = ("project_name", "project_slug", "package_name", "description", "author", "aws_region")


def problems(answers: dict[str, object]) -> list[str]:
    """Every problem with the answers, one message each."""
    found = [
        *(check_answer(field, answers[field]) for field in FREE_TEXT),
        check_boolean("include_github_ci", answers["include_github_ci"]),
        *(check_choice(field, str(answers[field])) for field in CHOICES),
    ]
    return [message for message in found if message]


def main() -> int:
    answers = {
        "project_name": json.loads(r""" {{ cookiecutter.project_name | tojson }} """),
        "project_slug": json.loads(r""" {{ cookiecutter.project_slug | tojson }} """),
        "package_name": json.loads(r""" {{ cookiecutter.package_name | tojson }} """),
        "description": json.loads(r""" {{ cookiecutter.description | tojson }} """),
        "author": json.loads(r""" {{ cookiecutter.author | tojson }} """),
        "python_version": json.loads(r""" {{ cookiecutter.python_version | tojson }} """),
        "server": json.loads(r""" {{ cookiecutter.server | tojson }} """),
        "framework": json.loads(r""" {{ cookiecutter.framework | tojson }} """),
        "aws_region": json.loads(r""" {{ cookiecutter.aws_region | tojson }} """),
        "include_github_ci": json.loads(r""" {{ cookiecutter.include_github_ci | tojson }} """),
    }
    messages = problems(answers)
    for message in messages:
        print(f"ERROR: {message}", file=sys.stderr)
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main())
