from tablehouse.cli import main

main()
