"""Privacy controls: never-import / never-pair lists (`lists`)."""
