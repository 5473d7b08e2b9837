#!/bin/sh
# pemesh's template launcher. A Project API client (TVM <= 0.18's tvm.micro / tvmc, pemesh's
# own client) runs: launch_microtvm_api_server.sh microtvm_api_server.py --read-fd R --write-fd W
# The server imports pemesh, so it must run in a Python that has pemesh, which need not be the
# client's. The interpreter, first found: $PEMESH_PYTHON; the .venv of the pemesh checkout this
# template sits in; python3. In a checkout the checkout goes on PYTHONPATH.
# (Generated projects get their own launcher naming the Python that generated them.)
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH= cd -- "$here/../.." && pwd)
if [ -z "$PEMESH_PYTHON" ]; then
    if [ -x "$root/.venv/bin/python" ]; then
        PEMESH_PYTHON="$root/.venv/bin/python"
    else
        PEMESH_PYTHON=python3
    fi
fi
if [ -d "$root/generator" ]; then
    PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
exec "$PEMESH_PYTHON" "$@"
