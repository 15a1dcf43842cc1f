"""Stoker's executor: the supervisor, the task owner, `stoker run` and the Mesos executor."""
