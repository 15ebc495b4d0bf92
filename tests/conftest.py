"""Shared test settings: the CUDA simulator and a hypothesis profile sized for CI on 2 cores."""

import os

# The CUDA twins are tested against their CPU twins in Numba's simulator.  This must be set before
# anything imports numba.cuda; on a machine with a real GPU run the suite with
# NUMBA_ENABLE_CUDASIM=0 to test the kernels on the device instead.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("CNNCORE_HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("ci")
