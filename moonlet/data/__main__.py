import sys

from .cli import main

sys.exit(main(["data", *sys.argv[1:]]))
