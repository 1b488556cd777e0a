from flowersort.start import main

main()
