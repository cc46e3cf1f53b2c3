from irisctl.cli import main

main()
