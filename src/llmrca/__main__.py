import sys

from llmrca.cli import main

sys.exit(main())
