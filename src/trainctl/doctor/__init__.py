"""Environment probe behind `trainctl doctor`, one module per job:

- `policy`: which paddle / paddledet / Python combinations are supported (pure);
- `probes`: collects the facts (Python, paddle and paddledet builds, libraries, GPUs, NCCL,
  network interfaces, InfiniBand/RoCE ports, GPUDirect RDMA, the `--net auto` choice);
- `verdict`: turns them into status items (ok / warn / fail / info);
- `rendering`: the table, the hints, the bug-report block.

Never imports paddle: versions come from package metadata and from the generated
`paddle/version/__init__.py`, read as text. The optional check (`run_paddle_check`)
imports paddle in a child process, so an import segfault is reported instead of
killing trainctl. The public names of the four modules are re-exported here.
"""

from trainctl.doctor.policy import (  # noqa: F401
    INSTALL_HINT_CPU, INSTALL_HINT_GPU, MEASURED_PAIRS, PPDET_MIN_PADDLE, TROUBLESHOOTING, VERDICT_STATUS, MeasuredPair,
    compatibility, prefix_match, version_tuple,
)
from trainctl.doctor.probes import (  # noqa: F401
    CHECK_EXPECTED, collect, host_facts, libstdcxx_facts, nccl_code_to_version, package_facts, paddle_facts,
    ppdet_choice, read_paddle_version_file, run_paddle_check,
)
from trainctl.doctor.verdict import Item, auto_text, exit_code, fmt_list, gpu_text, iface_text, judge, port_text  # noqa: F401
from trainctl.doctor.rendering import hints, render_bug_report, render_table  # noqa: F401
