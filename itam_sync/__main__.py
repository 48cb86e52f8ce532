"""`python -m itam_sync ...` is the `itam-sync` command."""

from itam_sync.cli.main import main

main()
