"""Beyond one machine: bulk inference on Ray Data, Ray-sharded data generation, Ray Serve replicas.

Ray is an optional dependency (``pip install 'moonlet[scale]'``); only the modules that need it
import it, when they run. The Ray pipeline reads its inputs and makes its rows with the
single-machine ``moonlet.batch`` (``inputs``, ``rows``), so both write the same rows.
"""
