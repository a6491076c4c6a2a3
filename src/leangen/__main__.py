from leangen.cli.main import main

main()
