import subprocess
import sys

import pytest

from {{ cookiecutter.package_name }}.__main__ import main


@pytest.mark.parametrize("argv", [[], ["predict"], ["train", "serve"], ["--help"]])
def test_anything_but_train_or_serve_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: python -m {{ cookiecutter.package_name }} train|serve|" in capsys.readouterr().err


def test_module_entry_point_exits_2_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_docs_rewrites_the_readme_tables(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- hyperparameters:begin -->\nSTALE-TABLE\n<!-- hyperparameters:end -->\n"
        "<!-- metrics:begin -->\n<!-- metrics:end -->\nrest\n"
    )
    assert main(["docs", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE-TABLE" not in text
    assert "| Hyperparameter | Type | Default | Bounds | Description |" in text
    assert "| Metric | Description | MetricDefinitions regex |" in text
    assert text.endswith("<!-- metrics:end -->\nrest\n")


def test_hyperparameters_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hyperparameters"]) == 0
    assert capsys.readouterr().out.startswith("| Hyperparameter | Type |")
