from mdmt_nas.cli import main

main()
