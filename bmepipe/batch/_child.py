"""Entry point of a batch worker process: ``python -m bmepipe.batch._child REQ_FD RESP_FD PARENT_PID``."""

import sys

from bmepipe.batch.worker import main

if __name__ == "__main__":
    sys.exit(main())
