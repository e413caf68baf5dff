from lit_ft.commands.cli import main

main()
