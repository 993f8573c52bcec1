"""Every operation of ECR's API model is served by the ECR door and listed in the README's
table of what is supported (none answers UnknownOperationException)."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session

from dockyard.doors.ecr import OPERATIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def model_operations() -> set[str]:
    return set(botocore.session.get_session().get_service_model("ecr").operation_names)


def readme_operations() -> set[str]:
    text = README.read_text()
    table = text[text.index("| | operations |") :].split("\n\n", 1)[0]
    named: set[str] = set()
    for row in table.splitlines()[2:]:
        cells = row.split("|")
        # Only the ECR operations: what the parentheses add (Signer, Secrets Manager) is not ECR's.
        named |= set(re.findall(r"\b[A-Z][A-Za-z]+\b", re.sub(r"\([^)]*\)", "", cells[2])))
    return named


def test_the_door_serves_every_operation_of_the_model() -> None:
    assert model_operations() - set(OPERATIONS) == set()


def test_the_readme_lists_every_operation_of_the_model_and_no_other() -> None:
    assert readme_operations() == model_operations()
