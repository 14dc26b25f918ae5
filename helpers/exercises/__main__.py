"""``python -m helpers.exercises --list``: one line per exercise; ``--solution NAME``: its reference."""
from . import main

main()
