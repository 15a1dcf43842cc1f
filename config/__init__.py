"""Stoker's job-spec layer: the Aurora schema, the .aurora loader, templates, the task document.

Every module that imports pystachio lives in this package, so this is where its compile-time
noise is silenced: pystachio 0.8 writes regular expressions with invalid escapes (`'\\w'` in
a plain string), which Python 3.12+ reports as a `SyntaxWarning` (3.11 as a
`DeprecationWarning`) each time it compiles the module from source — on every call of a
zipapp that cannot keep its bytecode. The filter names pystachio's files only.
"""
import warnings

for _category in (SyntaxWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", message="invalid escape sequence", category=_category,
                            module=r".*[/\\]pystachio[/\\]")
