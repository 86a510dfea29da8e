"""flowd: a container-native flow engine for Polyaxonfile DAGs."""
