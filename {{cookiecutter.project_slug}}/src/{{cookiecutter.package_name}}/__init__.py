"""A SageMaker bring-your-own-container model: ``python -m`` this package ``train|serve``."""

__version__ = "0.1.0"
