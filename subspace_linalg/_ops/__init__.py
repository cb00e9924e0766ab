"""The op catalogue: every native op is registered once as a ``subspace_linalg::<name>``
torch.library custom op with a fake implementation, one module per family in this
package (imported here automatically, so a new family edits no shared file).

Drivers call ``torch.ops.subspace_linalg.<name>.default`` on hot paths (the CustomOpDef
object costs ~30 us a call, the OpOverload ~10 us).
"""
from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _m.startswith("_"):
        importlib.import_module(f"{__name__}.{_m}")
