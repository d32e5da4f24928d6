"""Beyond one machine: bulk inference on Ray Data, Ray-sharded data generation, Ray Serve replicas.

Ray is an optional dependency (``pip install 'moonlet[scale]'``); only the modules that need it
import it, when they run. ``inputs`` and ``rows`` are shared with the single-process
``moonlet batch``, so both write the same rows.
"""
