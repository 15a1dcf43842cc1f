"""Stoker's job-spec layer: the Aurora schema, the .aurora loader, templates, the task document."""
