"""Jobs: the workflows a user runs (audit, demo, batch jobs), composed from the layers below.

Import them from their modules (``despina.jobs.audit``); nothing is imported here, so a
worker that runs one batch job does not pay for importing torch through the others.
"""
