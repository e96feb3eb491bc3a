"""The container's one entry point: ``python -m <package> train`` or ``... serve``.

SageMaker starts training jobs with ``docker run IMAGE train`` and endpoints and batch
transform with ``docker run IMAGE serve``: the word is appended to the Dockerfile's exec-form
ENTRYPOINT and arrives here. The same command works outside the container, with
``SAGEMAKER_BASE_DIR`` pointing at a local directory laid out like ``/opt/ml``.

More commands print what ``model.py`` declares, for people and for the deploy tooling:
``hyperparameters`` (a Markdown table), ``metric-definitions`` (SageMaker's JSON), and
``docs README.md``, which rewrites the README's tables from them.
"""

from __future__ import annotations

import json
import sys

USAGE = (
    f"usage: python -m {__package__} train|serve|hyperparameters|metric-definitions|docs README.md"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["train"]:
        from .training import main as train

        return train()
    if args == ["serve"]:
        # Imported lazily: serving must bind its port before any ML library is imported.
        from .serve import main as serve

        return serve()
    if args == ["hyperparameters"]:
        from .hyperparameters import describe
        from .model import Hyperparameters

        print(describe(Hyperparameters), end="")
        return 0
    if args == ["metric-definitions"]:
        from .job import metric_definitions
        from .training import all_metrics

        print(json.dumps(metric_definitions(all_metrics()), indent=2))
        return 0
    if len(args) == 2 and args[0] == "docs":
        from pathlib import Path

        from .docs import update

        readme = Path(args[1])
        readme.write_text(update(readme.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
