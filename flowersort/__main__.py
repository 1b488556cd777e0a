from flowersort.cli import main

main()
