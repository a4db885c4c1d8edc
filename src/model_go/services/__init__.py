"""Every operation the CLI, the REST API and the dashboard share, with its validation.

Each function takes a database connection and its collaborators (keyring, clock) as parameters,
returns typed results and raises the errors of model_go.errors for bad input, so every caller
gives the same answer and the same error.
"""
