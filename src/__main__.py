from vaultline.entrypoints.cli import main

main()
