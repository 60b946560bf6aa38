"""`python -m mdmt_nas`: the `mdmt-nas` command line."""

from mdmt_nas.cli import main

main()
