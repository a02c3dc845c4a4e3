"""`python -m scregnet.cli ...` (the watcher starts training runs this way)."""

from scregnet.cli import main

main()
