"""``python -m flowfn``: the ``flowfn`` command without its console script."""

from flowfn.cli import main

if __name__ == "__main__":
    main()
