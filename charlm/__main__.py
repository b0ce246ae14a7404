"""``python -m charlm``: the same entry point as the ``charlm`` console script."""

from charlm.cli import main

if __name__ == "__main__":
    main()
