"""The schema of params.yaml and pipelines.yaml, one module per part of the pipeline; ``tasks.core.config``
assembles them into :class:`~tasks.core.config.Config`."""
