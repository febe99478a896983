"""Prefect flows: thin sequences of the stage tasks in ``tasks/``. No stage logic lives here."""
