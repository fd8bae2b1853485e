"""Serve a bench_apps application with bjoern: ``python bjoern_runner.py HOST PORT [APP]``."""

import os
import sys


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bjoern

    import bench_apps

    host, port = sys.argv[1], int(sys.argv[2])
    app = getattr(bench_apps, sys.argv[3] if len(sys.argv) > 3 else "hello")
    print(f"bjoern listening at http://{host}:{port} ({os.getpid()})", file=sys.stderr, flush=True)
    try:
        bjoern.run(app, host, port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
