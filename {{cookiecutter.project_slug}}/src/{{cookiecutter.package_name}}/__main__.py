"""The container's one entry point: ``python -m <package> train`` or ``... serve``.

SageMaker starts training jobs with ``docker run IMAGE train`` and endpoints and batch
transform with ``docker run IMAGE serve``: the word is appended to the Dockerfile's exec-form
ENTRYPOINT and arrives here. The same command works outside the container, with
``SAGEMAKER_BASE_DIR`` pointing at a local directory laid out like ``/opt/ml``.
"""

from __future__ import annotations

import sys

USAGE = f"usage: python -m {__package__} train|serve"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["train"]:
        from .training import main as train

        return train()
    if args == ["serve"]:
        # Imported lazily: serving must bind its port before any ML library is imported.
        from .serve import main as serve

        return serve()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
