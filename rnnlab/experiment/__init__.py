"""The experiment layer: a YAML file, its schema and overrides, expanded into runs with
their identities (``load.load_experiment``); claims are the experiment's findings, checked on a
results folder by ``check.check_folder``."""
