from optileuk.cli import main

main()
